"""Training curves from TensorBoard event files, drawn with Pillow (no matplotlib).

`read_scalars` collects the scalar summaries of a log folder (the `logs/`
folder of a training work dir), `smooth` is TensorBoard's exponential moving
average, `line_chart` draws one panel per tag (raw curve faint, smoothed curve
bold) to a PNG and `write_csv` writes the same numbers as a table:

    series = curves.read_scalars("runs/starry_night/logs")
    curves.line_chart(series, "docs/starry_curve.png", smoothing=0.6)
    curves.write_csv(series, "docs/starry_curve.csv")

TensorFlow is imported only by `read_scalars`, after the folder was checked.
"""

import csv
import math
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from keras_style.core.images import atomic_write

#: Colours of the panels, in order (Tableau 10).
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]

#: Opacity (over white) of the raw curve under the smoothed one.
RAW_ALPHA = 0.4

#: Height of one row of panels chosen by `auto_size`.
ROW_HEIGHT = 250

_HEADER = 34  # px (before supersampling) above the panels: title and legend
_FONT_PX = 12


def read_scalars(logdir):
    """Reads every scalar summary written under `logdir`.

    All `*tfevents*` files below `logdir` are read; a file in a subfolder
    (a TensorBoard "run") prefixes its tags with the subfolder path. Files are
    applied oldest first (by the time they were started), so when a resumed
    run writes a step again, the newest file's value wins; within a file the
    last value written wins. A truncated last record (a crashed writer) is
    ignored. Non-scalar summaries (images, text) are skipped.

    Args:
        logdir: folder holding TensorBoard event files.

    Returns:
        `{tag: (steps, values)}` in order of first appearance; `steps` is an
        increasing int64 array and `values` a float64 array of the same length.

    Raises:
        ValueError: if the folder is missing, holds no event files or no
            scalar summaries.
    """
    logdir = Path(logdir)
    files = _event_files(logdir)
    merged = {}
    for _times, _name, tag_prefix, events in sorted(_load_file(f, logdir) for f in files):
        for tag, step, value in events:
            merged.setdefault(tag_prefix + tag, {})[step] = value
    if not merged:
        raise ValueError(f"No scalar summaries in the {len(files)} event file(s) under {logdir}")
    return {tag: _sorted_arrays(points) for tag, points in merged.items()}


def _event_files(logdir):
    if not logdir.is_dir():
        raise ValueError(f"Log folder not found: {logdir}")
    files = [f for f in logdir.rglob("*tfevents*") if f.is_file()]
    if not files:
        raise ValueError(f"No TensorBoard event files (events.out.tfevents.*) under {logdir}")
    return files


def _natural_key(text):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _load_file(path, logdir):
    """(start-time key, name key, tag prefix, [(tag, step, value)]) of one events file."""
    events, first_times = _read_events(path)
    rel = path.parent.relative_to(logdir).as_posix()
    prefix = "" if rel == "." else rel + "/"
    return first_times, _natural_key(str(path)), prefix, events


def _read_events(path):
    """Scalar events of one file, plus (file start time, first summary time) for ordering."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    events, times, other_plugins = [], [], set()
    try:
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            if len(times) < 2 and (not times or event.HasField("summary")):
                times.append(event.wall_time)
            for value in event.summary.value:
                scalar = _scalar(value, other_plugins, tf)
                if scalar is not None:
                    events.append((value.tag, int(event.step), scalar))
    except tf.errors.DataLossError:
        pass  # truncated last record of a crashed writer: keep what was read
    times += [math.inf] * (2 - len(times))
    return events, tuple(times)


def _scalar(value, other_plugins, tf):
    """The float of a scalar summary value, or None for anything else."""
    plugin = value.metadata.plugin_data.plugin_name
    if plugin:  # TF2 writes the plugin name with the first value of a tag only
        if plugin != "scalars":
            other_plugins.add(value.tag)
        else:
            other_plugins.discard(value.tag)
    if value.tag in other_plugins:
        return None
    kind = value.WhichOneof("value")
    if kind == "simple_value":  # TF1 summaries
        return float(value.simple_value)
    if kind != "tensor":
        return None
    array = tf.make_ndarray(value.tensor)
    if array.ndim != 0 or array.dtype.kind not in "fiub":
        return None
    return float(array)


def _sorted_arrays(points):
    steps = np.array(sorted(points), dtype=np.int64)
    values = np.array([points[s] for s in steps.tolist()], dtype=np.float64)
    return steps, values


def select(series, tags):
    """The tags `tags` (in that order) of `series`; all of them when `tags` is empty.

    Raises:
        ValueError: naming the unknown tags and the available ones.
    """
    if not tags:
        return dict(series)
    missing = [t for t in tags if t not in series]
    if missing:
        raise ValueError(f"Unknown tag(s) {', '.join(missing)}; available: {', '.join(series)}")
    return {t: series[t] for t in tags}


def smooth(values, weight):
    """TensorBoard's smoothing: a debiased exponential moving average.

    `weight` 0 returns the values unchanged; a constant series stays constant.
    Non-finite values (NaN, inf) are passed through and do not enter the
    average.

    Args:
        values: 1-D array-like of numbers.
        weight: smoothing weight in [0, 1); TensorBoard's slider value.

    Returns:
        A float64 array shaped like `values`.

    Raises:
        ValueError: if `weight` is outside [0, 1).
    """
    if not 0 <= weight < 1:
        raise ValueError(f"Smoothing weight must be in [0, 1), got {weight}")
    values = np.asarray(values, dtype=np.float64)
    out = values.copy()
    last, count = 0.0, 0
    for i, v in enumerate(values):
        if np.isfinite(v):
            last = last * weight + (1 - weight) * v
            count += 1
            out[i] = last / (1 - weight**count)
    return out


def write_csv(series, path):
    """Writes `series` as a table: a `step` column, then one column per tag.

    Steps are the union of all tags' steps; a tag without a value at a step
    has an empty cell. The file is replaced atomically.

    Args:
        series: `{tag: (steps, values)}` as returned by `read_scalars`.
        path: destination .csv file; its folder must exist.

    Raises:
        ValueError: if `series` is empty or the folder does not exist.
    """
    path = check_output(path, ".csv")
    _check_series(series)
    columns = {
        tag: dict(zip(s.tolist(), v.tolist(), strict=True)) for tag, (s, v) in series.items()
    }
    steps = sorted(set().union(*columns.values()))
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", *columns])
        for step in steps:
            cells = [_csv_cell(col.get(step)) for col in columns.values()]
            writer.writerow([step, *cells])
    return path


def _csv_cell(value):
    return "" if value is None else f"{value:.9g}"


def check_output(path, suffix):
    """`path` as a Path, checked to end in `suffix` and to lie in an existing folder.

    Raises:
        ValueError: on another suffix or a missing folder.
    """
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise ValueError(f"Cannot write {path}: the file name must end in {suffix}")
    if not path.parent.is_dir():
        raise ValueError(f"Output folder does not exist: {path.parent}")
    return path


def _check_series(series):
    if not series:
        raise ValueError("No series to write")
    for tag, (steps, values) in series.items():
        if len(steps) == 0 or len(steps) != len(values):
            raise ValueError(f"Tag {tag!r} has {len(steps)} steps and {len(values)} values")


def auto_size(count, width=900, row_height=ROW_HEIGHT):
    """(width, height) giving each row of `line_chart` panels `row_height` pixels."""
    rows, _ = _grid(count)
    return width, _HEADER + rows * row_height


def _grid(count):
    """(rows, columns) of the panels: one column for one tag, else two."""
    cols = 1 if count == 1 else 2
    return math.ceil(count / cols), cols


def line_chart(series, path, title=None, log_y=False, size=(900, 500), smoothing=0.6):
    """Draws one panel per tag to a PNG: the raw curve faint, the smoothed curve bold.

    The panels share the step axis (x); each has its own value axis (y) with
    tick labels and shows the last (raw) value in its heading. Non-finite
    values leave gaps. The image is drawn at twice the size and downsampled
    (anti-aliasing), then replaced atomically.

    Args:
        series: `{tag: (steps, values)}` as returned by `read_scalars` or `select`.
        path: destination .png file; its folder must exist.
        title: heading of the figure (default "Training curves").
        log_y: logarithmic value axes (every finite value must be positive).
        size: (width, height) of the PNG in pixels; `auto_size` suits the count.
        smoothing: `smooth` weight of the bold curve; 0 draws the raw curve only.

    Returns:
        The path written.

    Raises:
        ValueError: on an empty series, a bad path, a size too small for the
            panels, a bad smoothing weight or non-positive values with `log_y`.
    """
    path = check_output(path, ".png")
    _check_series(series)
    smooth([], smoothing)  # validates the weight before drawing
    if log_y:
        _check_positive(series)
    scale, font, title_font = _fonts()
    width, height = (int(v) for v in size)
    canvas = Image.new("RGB", (width * scale, height * scale), "white")
    draw = ImageDraw.Draw(canvas)
    chart = _Chart(draw, (font, title_font), scale, log_y, smoothing)
    chart.header(title or "Training curves", width * scale)
    boxes = _panel_boxes(len(series), width * scale, height * scale, scale)
    xlim = _step_range(series)
    for i, ((tag, (steps, values)), box) in enumerate(zip(series.items(), boxes, strict=True)):
        chart.panel(box, tag, steps, values, xlim, PALETTE[i % len(PALETTE)])
    image = canvas.resize((width, height), Image.Resampling.LANCZOS) if scale > 1 else canvas
    with atomic_write(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def _check_positive(series):
    for tag, (_, values) in series.items():
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() <= 0:
            raise ValueError(f"log_y needs positive values; {tag!r} goes down to {finite.min()}")


def _fonts():
    """(supersampling factor, label font, title font): Pillow's default font.

    With FreeType the default font scales, so the chart is drawn at twice the
    size and downsampled; without it, the fixed bitmap font is used at 1x.
    """
    if features.check("freetype2"):
        return 2, ImageFont.load_default(size=_FONT_PX * 2), ImageFont.load_default(size=30)
    font = ImageFont.load_default()
    return 1, font, font


def _panel_boxes(count, width, height, scale):
    rows, cols = _grid(count)
    top = _HEADER * scale
    cell_w, cell_h = width / cols, (height - top) / rows
    if cell_w < 160 * scale or cell_h < 100 * scale:
        raise ValueError(
            f"Size {width // scale}x{height // scale} is too small for {count} panels "
            f"({rows} rows x {cols} columns need at least 160x100 pixels each)"
        )
    return [
        (c * cell_w, top + r * cell_h, (c + 1) * cell_w, top + (r + 1) * cell_h)
        for r in range(rows)
        for c in range(cols)
    ][:count]


def _step_range(series):
    lo = min(int(steps[0]) for steps, _ in series.values())
    hi = max(int(steps[-1]) for steps, _ in series.values())
    return lo, hi


def nice_ticks(lo, hi, target=5, integer=False):
    """Round axis limits and ticks (steps of 1, 2, 2.5 or 5 x 10^k) covering [lo, hi].

    Returns:
        (axis_lo, axis_hi, ticks) with `ticks` a float64 array.
    """
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if (hi - lo) / (m * magnitude) <= target)
    if integer:
        step = max(1, round(step))
    axis_lo, axis_hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
    count = round((axis_hi - axis_lo) / step)
    return axis_lo, axis_hi, axis_lo + step * np.arange(count + 1)


def _x_axis(lo, hi):
    """Step axis: the data range padded by 2%, round ticks inside it."""
    _, _, ticks = nice_ticks(lo, hi, target=6, integer=True)
    pad = max((hi - lo) * 0.02, 0.5)
    lo, hi = lo - pad, hi + pad
    return lo, hi, ticks[(ticks >= lo) & (ticks <= hi)]


def log_ticks(lo, hi):
    """Log axis limits (padded) and ticks at 10^k, else 1, 2, 5 x 10^k, else round linear ones."""
    lo_log, hi_log = math.log10(lo), math.log10(hi)
    pad = max((hi_log - lo_log) * 0.05, 0.05)
    axis_lo, axis_hi = 10 ** (lo_log - pad), 10 ** (hi_log + pad)
    decades = range(math.floor(lo_log - pad), math.ceil(hi_log + pad) + 1)
    for mantissas in ((1,), (1, 2, 5)):
        ticks = [m * 10.0**e for e in decades for m in mantissas]
        ticks = np.array([t for t in ticks if axis_lo <= t <= axis_hi])
        if ticks.size >= 3:
            return axis_lo, axis_hi, ticks
    _, _, ticks = nice_ticks(axis_lo, axis_hi)  # about one decade or less: linear ticks
    return axis_lo, axis_hi, ticks[(ticks >= axis_lo) & (ticks <= axis_hi)]


def format_number(value, digits=6):
    """Short label: up to `digits` significant digits, compact exponent (1.5e6, 2e-5)."""
    text = f"{value:.{digits}g}"
    mantissa, sep, exponent = text.partition("e")
    if sep:
        text = f"{mantissa}e{int(exponent)}"
    return "0" if text == "-0" else text


def _blend(color, alpha):
    """`color` at opacity `alpha` over white, as an RGB tuple."""
    rgb = Image.new("RGB", (1, 1), color).getpixel((0, 0))
    return tuple(round(255 - alpha * (255 - c)) for c in rgb)


class _Chart:
    """Drawing helpers sharing the canvas, font and scale of one `line_chart`."""

    def __init__(self, draw, fonts, scale, log_y, smoothing):
        self.draw, (self.font, self.title_font), self.s = draw, fonts, scale
        self.log_y, self.smoothing = log_y, smoothing

    def text_size(self, text):
        left, top, right, bottom = self.draw.textbbox((0, 0), text, font=self.font)
        return right - left, bottom - top

    def header(self, title, width):
        s = self.s
        self.draw.text((12 * s, 8 * s), title, fill="black", font=self.title_font)
        if self.smoothing:
            items = [("raw", _blend("#444444", RAW_ALPHA), 1.5)]
            items.append((f"smoothed (EMA {self.smoothing:g})", "#444444", 2.5))
        else:
            items = [("raw", "#444444", 1.5)]
        x = width - 12 * s
        for label, color, line_width in reversed(items):
            x -= self.text_size(label)[0]
            self.draw.text((x, 10 * s), label, fill="#333333", font=self.font)
            x -= 26 * s
            y = 10 * s + self.text_size("Ag")[1] // 2 + 2 * s
            self.draw.line([(x, y), (x + 20 * s, y)], fill=color, width=round(line_width * s))
            x -= 16 * s

    def panel(self, box, tag, steps, values, xlim, color):
        s = self.s
        finite = values[np.isfinite(values)]
        smoothed = smooth(values, self.smoothing)
        ylo, yhi, yticks = self.y_axis(finite)
        xlo, xhi, xticks = _x_axis(*xlim)
        labels = [format_number(t) for t in yticks]
        label_w = max(self.text_size(t)[0] for t in labels)
        line_h = self.text_size("Ag")[1]
        plot = (
            box[0] + 14 * s + label_w,
            box[1] + line_h + 12 * s,
            box[2] - 16 * s,
            box[3] - line_h - 14 * s,
        )
        to_px = self.mapper(plot, (xlo, xhi), (ylo, yhi))
        self.heading(box, plot, tag, values, finite)
        self.grid(plot, to_px, xticks, yticks, labels)
        if finite.size:
            if self.smoothing:
                self.curve(to_px, steps, values, _blend(color, RAW_ALPHA), 1.5)
            self.curve(to_px, steps, smoothed, color, 2.5 if self.smoothing else 1.5)

    def y_axis(self, finite):
        if not finite.size:
            return 0.0, 1.0, np.array([0.0, 0.5, 1.0])
        lo, hi = float(finite.min()), float(finite.max())
        return log_ticks(lo, hi) if self.log_y else nice_ticks(lo, hi, target=5)

    def mapper(self, plot, xlim, ylim):
        left, top, right, bottom = plot
        f = np.log10 if self.log_y else np.asarray
        y0, y1 = f(ylim[0]), f(ylim[1])

        def to_px(x, y):
            px = left + (np.asarray(x, np.float64) - xlim[0]) / (xlim[1] - xlim[0]) * (right - left)
            py = bottom - (f(np.asarray(y, np.float64)) - y0) / (y1 - y0) * (bottom - top)
            return px, py

        return to_px

    def heading(self, box, plot, tag, values, finite):
        s = self.s
        self.draw.text((plot[0], box[1] + 6 * s), tag, fill="black", font=self.font)
        note = f"last {format_number(finite[-1], 4)}" if finite.size else "no finite values"
        if finite.size and finite.size < len(values):
            note += f" ({len(values) - finite.size} non-finite)"
        x = plot[2] - self.text_size(note)[0]
        self.draw.text((x, box[1] + 6 * s), note, fill="#555555", font=self.font)

    def grid(self, plot, to_px, xticks, yticks, ylabels):
        s = self.s
        left, top, right, bottom = plot
        xs, _ = to_px(xticks, np.full(len(xticks), yticks[0]))
        _, ys = to_px(np.zeros(len(yticks)), yticks)
        for x, tick in zip(xs, xticks, strict=True):
            self.draw.line([(x, top), (x, bottom)], fill="#e6e6e6", width=s)
            label = format_number(tick)
            w = self.text_size(label)[0]
            self.draw.text((x - w / 2, bottom + 5 * s), label, fill="#333333", font=self.font)
        for y, label in zip(ys, ylabels, strict=True):
            self.draw.line([(left, y), (right, y)], fill="#e6e6e6", width=s)
            w, h = self.text_size(label)
            self.draw.text(
                (left - 6 * s - w, y - h / 2 - 2 * s), label, fill="#333333", font=self.font
            )
        self.draw.rectangle([left, top, right, bottom], outline="#999999", width=s)

    def curve(self, to_px, steps, values, color, line_width):
        mask = np.isfinite(values)
        xs, ys = to_px(steps, np.where(mask, values, 1.0))
        width = max(1, round(line_width * self.s))
        for run in _runs(mask):
            points = list(zip(xs[run].tolist(), ys[run].tolist(), strict=True))
            if len(points) == 1:
                (x, y), r = points[0], width
                self.draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
            else:
                self.draw.line(points, fill=color, width=width, joint="curve")


def _runs(mask):
    """Slices of the consecutive True stretches of a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [slice(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True)]
