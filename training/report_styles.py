r"""Quality report of the bundled styles: distances on held-out photos and a contact sheet.

    python -m training.report_styles --paintings_dir=../shared/data/styles \
        --backbone=vgg16 --vgg_weights=../shared/weights/vgg16_hed_notop_fp16.weights.h5 \
        --out_dir=docs/bundled_styles

Stylizes the photos (default: the package's example photos, which no bundled
style was trained on) with every bundled style and writes report.json (the
Gram-style distance of each output to its painting, next to the photo's own,
and the content distance to the photo) and contact_sheet.jpg (one column
per style headed by its painting, one row per photo).

At full resolution, as users stylize, on a folder of held-out photos, and for
networks that are not bundled yet (a work dir's model.keras):

    python -m training.report_styles --paintings_dir=../shared/data/styles \
        --backbone=vgg16 --vgg_weights=../shared/weights/vgg16_hed_notop_fp16.weights.h5 \
        --photos_dir=../shared/data/eval_photos --model=great_wave=runs/gw/model.keras \
        --slow_dir=runs/slow --out_dir=runs/report

Each photo is stylized whole (`FastStylizer`), then output and photo are
measured at a --size long side. report.json has the means and per-photo
values; contact_sheet_<style>.jpg shows --sheet_photos photos at full
resolution: photo | slow method (from --slow_dir/<style>/<photo>.png, when
there) | network.
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
flags.DEFINE_string(
    "photos_dir",
    None,
    "Folder of held-out photos, stylized at full resolution and measured at a --size long "
    "side (replaces --photos).",
)
flags.DEFINE_multi_string(
    "model", None, "NAME=PATH: report this .keras network as style NAME (repeatable)."
)
flags.DEFINE_list("sheet_photos", None, "Photo names (file stems) in the full-resolution sheets.")
flags.DEFINE_integer("num_sheet_photos", 3, "Photos in the full-resolution sheets.")
flags.DEFINE_string("slow_dir", None, "Slow-method outputs, <slow_dir>/<style>/<photo>.png.")
flags.DEFINE_string("out_dir", None, "Folder for report.json and contact_sheet.jpg.", required=True)


def _painting(folder, name):
    from keras_style.core import images as image_lib

    matches = sorted(Path(folder).glob(f"{name}.*"))
    if not matches:
        raise ValueError(f"No painting for style {name!r} in {folder} (expected {name}.jpg)")
    return image_lib.load_image(matches[0])


def _networks():
    """{style name: network source}: --model entries, else every bundled style."""
    from keras_style.fast import styles

    if FLAGS.model:
        return binary.parse_models(FLAGS.model)
    names = FLAGS.styles or styles.list_styles()
    if not names:
        raise ValueError("No bundled style is installed")
    return {name: name for name in names}


def _spread(names, count):
    """`count` names spread evenly over `names` (all of them if fewer)."""
    count = min(count, len(names))
    return [names[i * len(names) // count] for i in range(count)]


def _sheet_rows(name, photos, kept):
    from keras_style.core import images as image_lib

    rows = []
    for photo_name in kept:
        row = [("photo", image_lib.load_image(photos[photo_name]))]
        slow = Path(FLAGS.slow_dir or "") / name / f"{photo_name}.png"
        if FLAGS.slow_dir and slow.is_file():
            row.append(("slow method", image_lib.load_image(slow)))
        row.append((f"{name} network", kept[photo_name]))
        rows.append(row)
    return rows


def run_full_resolution(extractor, out):
    from keras_style.core import images as image_lib
    from keras_style.fast.stylizer import FastStylizer
    from keras_style.quality import style_report

    files = image_lib.list_image_files(FLAGS.photos_dir)
    if not files:
        raise ValueError(f"No photos in {FLAGS.photos_dir}")
    photos = {Path(f).stem: str(f) for f in files}
    keep = FLAGS.sheet_photos or _spread(list(photos), FLAGS.num_sheet_photos)
    unknown = sorted(set(keep) - set(photos))
    if unknown:
        raise ValueError(f"--sheet_photos not in {FLAGS.photos_dir}: {', '.join(unknown)}")
    report = {"photos_dir": FLAGS.photos_dir, "measure_side": FLAGS.size, "styles": {}}
    for name, source in _networks().items():
        painting = _painting(FLAGS.paintings_dir, name)
        figures, kept = style_report.full_resolution_figures(
            FastStylizer(source), photos, painting, extractor, FLAGS.size, keep
        )
        figures["model"] = str(source)
        report["styles"][name] = figures
        sheet = style_report.row_sheet(_sheet_rows(name, photos, kept))
        image_lib.save_image(sheet, out / f"contact_sheet_{name}.jpg", quality=88)
        print(
            f"{name}: style {figures['style_distance']:.4f} (photo "
            f"{figures['photo_style_distance']:.4f}), content {figures['content_distance']:.4f}",
            flush=True,
        )
    return report


def run():
    from keras_style.core import images as image_lib
    from keras_style.core import jsonio, losses
    from keras_style.fast import styles
    from keras_style.quality import style_report
    from keras_style.slow import cache

    extractor = cache.get_extractor(losses.LossConfig().layers, FLAGS.backbone, FLAGS.vgg_weights)
    out = Path(FLAGS.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if FLAGS.photos_dir:
        report = run_full_resolution(extractor, out)
        report["loss_network"] = {"backbone": FLAGS.backbone, "weights": FLAGS.vgg_weights}
        jsonio.write_json(out / "report.json", report)
        print(f"Report and contact sheets written to {out}")
        return
    names = FLAGS.styles or styles.list_styles()
    if not names:
        raise ValueError("No bundled style is installed")
    photos = {
        Path(p).stem: image_lib.center_square(image_lib.load_image(p), FLAGS.size)
        for p in FLAGS.photos
    }
    paintings = {n: _painting(FLAGS.paintings_dir, n) for n in names}
    report, sheet = style_report.bundled_styles_report(photos, paintings, extractor, names)
    report["loss_network"] = {"backbone": FLAGS.backbone, "weights": FLAGS.vgg_weights}
    jsonio.write_json(out / "report.json", report)
    image_lib.save_image(sheet, out / "contact_sheet.jpg", quality=90)
    print(style_report.markdown_table(report))
    print(f"Report and contact sheet written to {out}")


def main(argv):
    binary.run_cleanly(argv, run, quiet_native_logs=True)


if __name__ == "__main__":
    app.run(main)
