"""Draws the TensorBoard scalars of a training work dir as a PNG (and CSV) for the docs.

Reads workdir/logs (or --workdir itself when it has no logs/ folder), draws
one panel per tag, the raw curve faint and the smoothed one bold, and prints
each tag's step range and last value.

    python -m training.plot_curve --workdir runs/starry_night \\
        --out docs/starry_night_curve.png --tags loss,style_loss,content_loss \\
        --csv docs/starry_night_curve.csv
"""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from training import binary  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Training work dir (its logs/ folder is read).")
flags.DEFINE_string("out", None, "Output .png file.")
flags.DEFINE_list("tags", [], "Tags to draw, in order (default: every scalar tag).")
flags.DEFINE_float("smoothing", 0.6, "TensorBoard smoothing weight in [0, 1); 0 = raw only.")
flags.DEFINE_string("csv", None, "Also write the selected scalars to this .csv file.")
flags.DEFINE_string("title", None, "Figure heading (default: the work dir's name).")
flags.DEFINE_bool("log_y", False, "Logarithmic value axes.")
flags.DEFINE_integer("width", 900, "Image width in pixels.")
flags.DEFINE_integer("height", 0, "Image height in pixels (0: 250 per row of panels).")


def log_folder(workdir):
    """workdir/logs when it exists, else `workdir` itself (a logs folder given directly)."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise ValueError(f"Work dir not found: {workdir}")
    logs = workdir / "logs"
    return logs if logs.is_dir() else workdir


def run():
    from keras_style.quality import curves

    if not FLAGS.workdir or not FLAGS.out:
        raise ValueError("--workdir and --out are required")
    curves.check_output(FLAGS.out, ".png")
    if FLAGS.csv:
        curves.check_output(FLAGS.csv, ".csv")
    logdir = log_folder(FLAGS.workdir)
    series = curves.select(curves.read_scalars(logdir), FLAGS.tags)
    size = (
        (FLAGS.width, FLAGS.height) if FLAGS.height else curves.auto_size(len(series), FLAGS.width)
    )
    title = FLAGS.title or f"{Path(FLAGS.workdir).resolve().name}: training curves"
    curves.line_chart(
        series, FLAGS.out, title=title, log_y=FLAGS.log_y, size=size, smoothing=FLAGS.smoothing
    )
    if FLAGS.csv:
        curves.write_csv(series, FLAGS.csv)
    for tag, (steps, values) in series.items():
        print(
            f"{tag}: {len(steps)} points, steps {steps[0]}..{steps[-1]}, "
            f"last {curves.format_number(values[-1])}"
        )
    print(f"wrote {FLAGS.out}" + (f" and {FLAGS.csv}" if FLAGS.csv else ""))


def main(argv):
    binary.run_cleanly(argv, run, quiet_native_logs=True)


if __name__ == "__main__":
    app.run(main)
