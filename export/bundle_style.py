"""Installs a trained network as a bundled style of the package (float16 weights + card).

    python -m export.bundle_style --model=runs/great_wave/model.keras --name=great_wave \
        --title="The Great Wave off Kanagawa" --artist="Katsushika Hokusai" --year=c. 1831

The style then loads offline with `keras_style.stylize(photo, style="great_wave")`,
`keras-style stylize PHOTO --style great_wave` and `FastStylizer("great_wave")`.
The card records the painting's attribution and the training config found
beside the model (the work dir's config.json).
"""

from absl import app, flags

from export._common import run_cleanly

_MODEL = flags.DEFINE_string(
    "model", None, "Trained .keras model (a work dir's model.keras).", required=True
)
_NAME = flags.DEFINE_string(
    "name", None, "Style name: lowercase letters, digits, _.", required=True
)
_TITLE = flags.DEFINE_string("title", None, "Title of the painting.", required=True)
_ARTIST = flags.DEFINE_string("artist", None, "Artist of the painting.", required=True)
_YEAR = flags.DEFINE_string("year", None, "Year of the painting.")
_LICENSE = flags.DEFINE_string("license", "public domain", "Licence of the painting image.")
_REPORT = flags.DEFINE_string(
    "report",
    None,
    "A training.report_styles report.json: the style's figures (under its --name) go in the card.",
)
_ASSETS = flags.DEFINE_string("assets_dir", None, "Destination (default: the package's styles).")


def _figures(report_path, name):
    """This style's entry of a report.json, without the per-photo lists."""
    from keras_style.core import jsonio

    report = jsonio.read_preset(report_path)
    if name not in report.get("styles", {}):
        raise ValueError(f"{report_path} has no figures for style {name!r}")
    figures = {k: v for k, v in report["styles"][name].items() if k != "per_photo"}
    return {
        **figures,
        "photos_dir": report.get("photos_dir"),
        "measure_side": report.get("measure_side"),
    }


def main(argv):
    del argv

    def run():
        from keras_style.fast import styles

        painting = {"title": _TITLE.value, "artist": _ARTIST.value, "license": _LICENSE.value}
        if _YEAR.value:
            painting["year"] = _YEAR.value
        figures = _figures(_REPORT.value, _NAME.value) if _REPORT.value else None
        path = styles.bundle_trained_model(
            _MODEL.value, _NAME.value, painting, _ASSETS.value, figures
        )
        size = path.stat().st_size
        print(f"Style {_NAME.value!r} installed: {path} ({size / 2**20:.2f} MiB)")

    run_cleanly(run, quiet_native_logs=True)  # without TensorFlow's C++ start-up lines


if __name__ == "__main__":
    app.run(main)
