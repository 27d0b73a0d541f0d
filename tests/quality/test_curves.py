"""Training curves: TensorBoard scalars read back, smoothed and drawn (quality.curves)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_style.quality import curves

REPO = Path(__file__).resolve().parents[2]

#: A first run writes steps 0..30; the resumed run restarts at step 20 (newest wins).
RUN_1 = {"loss": {0: 1.0, 10: 2.0, 20: 3.0, 30: 4.0}, "style_loss": {0: 0.5, 10: 0.25}}
RUN_2 = {"loss": {20: 30.0, 30: 40.0, 40: 50.0}}


def _write_run(logdir, scalars, image_step=None):
    """One events file in `logdir`, as the trainer writes it (tensor scalars, no tensorboard)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    def metadata(plugin):
        meta = summary_pb2.SummaryMetadata()
        meta.plugin_data.plugin_name = plugin
        return meta

    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for tag, points in scalars.items():
            for step, value in points.items():
                tf.summary.write(tag, tf.constant(value), step=step, metadata=metadata("scalars"))
        if image_step is not None:
            pixels = tf.constant(["1", "1", "not-a-png"])
            tf.summary.write("samples", pixels, step=image_step, metadata=metadata("images"))
    writer.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A work dir whose logs/ holds a first run and a resumed run overlapping it."""
    root = tmp_path_factory.mktemp("run")
    _write_run(root / "logs", RUN_1, image_step=10)
    _write_run(root / "logs", RUN_2)
    return root


def test_read_scalars_keeps_the_newest_value_per_step(workdir):
    assert len(list((workdir / "logs").iterdir())) == 2
    series = curves.read_scalars(workdir / "logs")
    assert list(series) == ["loss", "style_loss"]  # the image summary is skipped
    steps, values = series["loss"]
    np.testing.assert_array_equal(steps, [0, 10, 20, 30, 40])
    np.testing.assert_allclose(values, [1.0, 2.0, 30.0, 40.0, 50.0])
    assert steps.dtype == np.int64 and values.dtype == np.float64
    np.testing.assert_allclose(series["style_loss"][1], [0.5, 0.25])


def test_read_scalars_ignores_a_truncated_last_record(workdir, tmp_path):
    logs = shutil.copytree(workdir / "logs", tmp_path / "logs")
    with open(sorted(logs.iterdir())[-1], "ab") as f:  # a writer killed in the middle of a record
        f.write(b"\x40\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04partial")
    np.testing.assert_allclose(curves.read_scalars(logs)["loss"][1], [1, 2, 30, 40, 50])


def test_read_scalars_errors(tmp_path):
    with pytest.raises(ValueError, match="Log folder not found"):
        curves.read_scalars(tmp_path / "missing")
    with pytest.raises(ValueError, match="No TensorBoard event files"):
        curves.read_scalars(tmp_path)
    _write_run(tmp_path / "images_only", {}, image_step=1)
    with pytest.raises(ValueError, match="No scalar summaries"):
        curves.read_scalars(tmp_path / "images_only")


def test_select(workdir):
    series = curves.read_scalars(workdir / "logs")
    assert list(curves.select(series, ["style_loss", "loss"])) == ["style_loss", "loss"]
    assert list(curves.select(series, [])) == ["loss", "style_loss"]
    with pytest.raises(ValueError, match="Unknown tag.*tv_loss.*available: loss, style_loss"):
        curves.select(series, ["loss", "tv_loss"])


def test_smooth():
    np.testing.assert_allclose(curves.smooth(np.full(20, 3.5), 0.9), 3.5)
    values = np.array([5.0, 1.0, 4.0, 2.0])
    np.testing.assert_array_equal(curves.smooth(values, 0.0), values)
    # Debiased EMA, as TensorBoard: (0.5 * 0 + 0.5 * 1) / (1 - 0.5**2) = 2/3.
    np.testing.assert_allclose(curves.smooth([0.0, 1.0], 0.5), [0.0, 2 / 3])
    with_nan = curves.smooth([1.0, np.nan, 1.0], 0.6)
    assert np.isnan(with_nan[1]) and with_nan[0] == with_nan[2] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        curves.smooth(values, 1.0)


def _pixels(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB")).astype(np.int16)


def _near(pixels, color, tol=40):
    """Mask of the pixels within `tol` (per channel) of the hex `color`."""
    rgb = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
    return np.abs(pixels - rgb).max(axis=-1) <= tol


#: matplotlib's first colours (Tableau 10), one per panel.
BLUE, ORANGE, GREEN = "#1f77b4", "#ff7f0e", "#2ca02c"


def test_line_chart_writes_a_png_of_the_requested_size(workdir, tmp_path):
    series = curves.read_scalars(workdir / "logs")
    out = curves.line_chart(series, tmp_path / "curve.png", size=(640, 360), smoothing=0.9)
    pixels = _pixels(out)
    assert pixels.shape == (360, 640, 3)
    assert (pixels.min(axis=-1) < 128).mean() > 0.005  # text, axes and curves drawn
    assert _near(pixels, BLUE, 10).sum() > 50 and _near(pixels, ORANGE, 10).sum() > 50
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_line_chart_one_panel_per_tag_in_a_two_column_grid(tmp_path):
    steps = np.arange(50)
    series = {tag: (steps, np.cos(steps / (i + 3)) + 2) for i, tag in enumerate("abc")}
    pixels = _pixels(curves.line_chart(series, tmp_path / "c.png", size=curves.auto_size(3)))
    assert pixels.shape == (34 + 2 * curves.ROW_HEIGHT, 900, 3)
    height, width = pixels.shape[:2]
    top, bottom = slice(0, height // 2), slice(height // 2, height)
    left, right = slice(0, width // 2), slice(width // 2, width)
    for color, (rows, cols) in (
        (BLUE, (top, left)),
        (ORANGE, (top, right)),
        (GREEN, (bottom, left)),
    ):
        mask = _near(pixels, color, 10)
        assert mask[rows, cols].sum() > 100 and mask[rows, cols].sum() > 0.95 * mask.sum(), color
    assert (pixels[round(height * 0.6) :, right] > 250).all()  # no fourth panel


def _curve_rows(pixels, color):
    """(columns, mean row) of the pixels of the bold `color` curve."""
    mask = _near(pixels, color, 10)
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.array([np.flatnonzero(mask[:, c]).mean() for c in cols])
    return cols, rows


def test_line_chart_log_y_draws_exponential_data_straight(tmp_path):
    series = {"loss": (np.arange(0, 40, 4), 10.0 ** -np.arange(0, 10, 1.0))}
    straightness = {}
    for log_y in (True, False):
        path = curves.line_chart(series, tmp_path / f"{log_y}.png", log_y=log_y, smoothing=0)
        cols, rows = _curve_rows(_pixels(path), BLUE)
        fit = np.polyval(np.polyfit(cols, rows, 1), cols)
        straightness[log_y] = np.abs(rows - fit).max()
    assert straightness[True] < 3 < 30 < straightness[False]


def test_line_chart_smoothing_draws_a_faint_raw_curve_under_the_smoothed_one(tmp_path):
    rng = np.random.default_rng(0)
    series = {"loss": (np.arange(200), rng.normal(5, 1, 200))}
    smoothed = _pixels(curves.line_chart(series, tmp_path / "s.png", smoothing=0.9))
    raw_only = _pixels(curves.line_chart(series, tmp_path / "r.png", smoothing=0))
    faint = "#a5c8e1"  # BLUE at 40% over white
    # Anti-aliased edges of the raw-only line hold some of that shade too, far fewer.
    assert _near(smoothed, faint, 4).sum() > 4 * _near(raw_only, faint, 4).sum()
    # The bold curve is the EMA: far less spread than the raw values.
    assert np.ptp(_curve_rows(smoothed, BLUE)[1]) < 0.5 * np.ptp(_curve_rows(raw_only, BLUE)[1])


def test_line_chart_gaps_for_non_finite_values_and_a_lone_point(tmp_path):
    series = {
        "loss": (np.array([0, 5, 9, 12]), np.array([3.0, np.nan, np.inf, 1e-3])),
        "lr": (np.array([7]), np.array([0.5])),
    }
    out = curves.line_chart(series, tmp_path / "log.png", title="x", log_y=True, smoothing=0)
    pixels = _pixels(out)
    assert pixels.shape == (500, 900, 3)
    assert _near(pixels, ORANGE, 10).sum() > 10  # the single lr point is drawn as a marker


def test_line_chart_errors(workdir, tmp_path):
    series = curves.read_scalars(workdir / "logs")
    with pytest.raises(ValueError, match="must end in .png"):
        curves.line_chart(series, tmp_path / "curve.jpg")
    with pytest.raises(ValueError, match="Output folder does not exist"):
        curves.line_chart(series, tmp_path / "missing" / "curve.png")
    with pytest.raises(ValueError, match="too small"):
        curves.line_chart(series, tmp_path / "curve.png", size=(200, 100))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        curves.line_chart(series, tmp_path / "curve.png", smoothing=1.0)
    with pytest.raises(ValueError, match="No series"):
        curves.line_chart({}, tmp_path / "curve.png")
    for bad in (-1.0, 0.0):
        negative = {"loss": (np.array([0, 1]), np.array([1.0, bad]))}
        with pytest.raises(ValueError, match="log_y needs positive values"):
            curves.line_chart(negative, tmp_path / "curve.png", log_y=True)
    assert not list(tmp_path.iterdir())


def test_missing_libraries_name_the_plots_extra(workdir, tmp_path, monkeypatch):
    series = curves.read_scalars(workdir / "logs")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"line_chart needs matplotlib.*keras-style\[plots\]"):
        curves.line_chart(series, tmp_path / "curve.png")
    monkeypatch.setitem(sys.modules, "tensorboard.util.tensor_util", None)
    with pytest.raises(ImportError, match=r"read_scalars needs tensorboard.*\[plots\]"):
        curves.read_scalars(workdir / "logs")
    assert not list(tmp_path.iterdir())


def test_read_scalars_reads_tf1_simple_values_and_run_subfolders(tmp_path):
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    writer = tf.summary.create_file_writer(str(tmp_path / "eval"))
    with writer.as_default():
        for step, value in ((3, 0.5), (6, 0.25)):
            value = summary_pb2.Summary.Value(tag="lr", simple_value=value)
            tf.summary.experimental.write_raw_pb(
                summary_pb2.Summary(value=[value]).SerializeToString(), step=step
            )
    writer.close()
    steps, values = curves.read_scalars(tmp_path)["eval/lr"]
    assert steps.tolist() == [3, 6] and values.tolist() == [0.5, 0.25]


def test_write_csv(workdir, tmp_path):
    path = curves.write_csv(curves.read_scalars(workdir / "logs"), tmp_path / "curve.csv")
    assert path.read_text().splitlines() == [
        "step,loss,style_loss",
        "0,1,0.5",
        "10,2,0.25",
        "20,30,",
        "30,40,",
        "40,50,",
    ]


def _plot_curve(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "training.plot_curve", *map(str, args)]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_binary_end_to_end(workdir, tmp_path):
    out, table = tmp_path / "curve.png", tmp_path / "curve.csv"
    result = _plot_curve(f"--workdir={workdir}", f"--out={out}", f"--csv={table}", "--tags=loss")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loss: 5 points, steps 0..40, last 50" in result.stdout
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == curves.auto_size(1)
    assert table.read_text().splitlines()[0] == "step,loss"


def test_binary_missing_workdir_is_one_stderr_line(tmp_path):
    missing = tmp_path / "missing"
    result = _plot_curve(f"--workdir={missing}", f"--out={tmp_path / 'curve.png'}")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: Work dir not found: {missing}"]
    assert not (tmp_path / "curve.png").exists()
