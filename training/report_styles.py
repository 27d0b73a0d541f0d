r"""Quality report of the bundled styles: distances on held-out photos and a contact sheet.

    python -m training.report_styles --paintings_dir=../shared/data/styles \
        --backbone=vgg16 --vgg_weights=../shared/weights/vgg16_hed_notop_fp16.weights.h5 \
        --out_dir=docs/bundled_styles

Stylizes the photos (default: the package's example photos, which no bundled
style was trained on) with every bundled style and writes report.json (the
Gram-style distance of each output to its painting, next to the photo's own,
and the content distance to the photo) and contact_sheet.jpg (one column
per style headed by its painting, one row per photo).
"""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from training import binary  # noqa: E402

_EXAMPLES = Path(__file__).resolve().parent.parent / "keras_style" / "assets" / "examples"
_DEFAULT_PHOTOS = [
    str(_EXAMPLES / f) for f in ("chelsea.jpg", "astronaut.jpg", "coffee.jpg", "rocket.jpg")
]

FLAGS = flags.FLAGS
flags.DEFINE_list("photos", _DEFAULT_PHOTOS, "Photo files the styles did not train on.")
flags.DEFINE_string("paintings_dir", None, "Folder with <style name>.jpg paintings.", required=True)
flags.DEFINE_list("styles", None, "Styles to report (default: all bundled ones).")
flags.DEFINE_enum("backbone", "vgg19", ["vgg16", "vgg19"], "Loss network measuring distances.")
flags.DEFINE_string("vgg_weights", "imagenet", "'imagenet' (download) or a local weights file.")
flags.DEFINE_integer("size", 384, "Side of the square photos stylized and measured.")
flags.DEFINE_string("out_dir", None, "Folder for report.json and contact_sheet.jpg.", required=True)


def _painting(folder, name):
    from keras_style.core import images as image_lib

    matches = sorted(Path(folder).glob(f"{name}.*"))
    if not matches:
        raise ValueError(f"No painting for style {name!r} in {folder} (expected {name}.jpg)")
    return image_lib.load_image(matches[0])


def run():
    from keras_style.core import images as image_lib
    from keras_style.core import jsonio, losses
    from keras_style.fast import styles
    from keras_style.quality import style_report
    from keras_style.slow import cache

    names = FLAGS.styles or styles.list_styles()
    if not names:
        raise ValueError("No bundled style is installed")
    photos = {
        Path(p).stem: image_lib.center_square(image_lib.load_image(p), FLAGS.size)
        for p in FLAGS.photos
    }
    paintings = {n: _painting(FLAGS.paintings_dir, n) for n in names}
    extractor = cache.get_extractor(losses.LossConfig().layers, FLAGS.backbone, FLAGS.vgg_weights)
    report, sheet = style_report.bundled_styles_report(photos, paintings, extractor, names)
    report["loss_network"] = {"backbone": FLAGS.backbone, "weights": FLAGS.vgg_weights}
    out = Path(FLAGS.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jsonio.write_json(out / "report.json", report)
    image_lib.save_image(sheet, out / "contact_sheet.jpg", quality=90)
    print(style_report.markdown_table(report))
    print(f"Report and contact sheet written to {out}")


def main(argv):
    binary.run_cleanly(argv, run, quiet_native_logs=True)


if __name__ == "__main__":
    app.run(main)
