"""Exports a trained model.keras as a SavedModel for TensorFlow Serving.

    python -m export.export_saved_model --model runs/starry/model.keras --out models/starry/1

`serving_default` takes a uint8 batch [N, H, W, 3] and returns uint8; the
`serving_float32` signature takes and returns float32 in [0, 255].
"""

from absl import app, flags

from export._common import run_cleanly

_MODEL = flags.DEFINE_string(
    "model",
    None,
    "Trained .keras model, or a bundled style name (keras-style list-styles).",
    required=True,
)
_OUT = flags.DEFINE_string("out", None, "SavedModel folder to create.", required=True)
_STYLE = flags.DEFINE_string("style_name", None, "Style name for the model card.")
_CONFIG = flags.DEFINE_string(
    "training_config",
    None,
    "Training config JSON (default: config.json beside --model).",
)


def main(argv):
    del argv
    from keras_style.export import saved_model

    def run():
        path = saved_model.export_saved_model(
            _MODEL.value,
            _OUT.value,
            style_name=_STYLE.value,
            training_config=_CONFIG.value,
        )
        print(f"SavedModel written to {path}")

    run_cleanly(run)


if __name__ == "__main__":
    app.run(main)
