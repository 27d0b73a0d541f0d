"""Training curves from TensorBoard event files, drawn with matplotlib.

`read_scalars` collects the scalar summaries of a log folder (the `logs/`
folder of a training work dir) with TensorBoard's own event-file reader,
`smooth` is TensorBoard's exponential moving average, `line_chart` draws one
panel per tag (raw curve faint, smoothed curve bold) to a PNG and `write_csv`
writes the same numbers as a table:

    series = curves.read_scalars("runs/starry_night/logs")
    curves.line_chart(series, "docs/starry_curve.png", smoothing=0.6)
    curves.write_csv(series, "docs/starry_curve.csv")

TensorBoard and matplotlib (the `plots` extra: `pip install keras-style[plots]`)
are imported only by `read_scalars` and `line_chart`, after their inputs were
checked.
"""

import csv
import math
import re
from pathlib import Path

import numpy as np

from keras_style.core.images import atomic_write

#: Opacity of the raw curve under the smoothed one.
RAW_ALPHA = 0.4

#: Height of one row of panels chosen by `auto_size`.
ROW_HEIGHT = 250

_HEADER = 34  # px above the panels: title and legend
_DPI = 100
_MIN_PANEL = (160, 100)  # px: smallest panel that still fits its labels


def _require(module, what):
    """Imports `module`, or raises ImportError naming the `plots` extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{what} needs {module.split('.')[0]}: pip install keras-style[plots]"
        ) from e


def read_scalars(logdir):
    """Reads every scalar summary written under `logdir`.

    All `*tfevents*` files below `logdir` are read with TensorBoard's
    `EventFileLoader` (which also turns TF1 `simple_value` scalars into
    tensors); a file in a subfolder (a TensorBoard "run") prefixes its tags
    with the subfolder path. Files are applied oldest first (by the time they
    were started), so when a resumed run writes a step again, the newest
    file's value wins; within a file the last value written wins. A truncated
    last record (a crashed writer) is ignored. Non-scalar summaries (images,
    text) are skipped.

    Args:
        logdir: folder holding TensorBoard event files.

    Returns:
        `{tag: (steps, values)}` in order of first appearance; `steps` is an
        increasing int64 array and `values` a float64 array of the same length.

    Raises:
        ValueError: if the folder is missing, holds no event files or no
            scalar summaries.
        ImportError: if TensorBoard is not installed.
    """
    logdir = Path(logdir)
    files = _event_files(logdir)
    loader = _require("tensorboard.backend.event_processing.event_file_loader", "read_scalars")
    tensor_util = _require("tensorboard.util.tensor_util", "read_scalars")
    merged = {}
    loaded = (_load_file(f, logdir, loader, tensor_util) for f in files)
    for _times, _name, tag_prefix, events in sorted(loaded):
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


def _load_file(path, logdir, loader, tensor_util):
    """(start-time key, name key, tag prefix, [(tag, step, value)]) of one events file."""
    events, times, plugins = [], [], {}
    for event in loader.EventFileLoader(str(path)).Load():
        if len(times) < 2 and (not times or event.HasField("summary")):
            times.append(event.wall_time)
        for value in event.summary.value:
            # TF2 writes the plugin name with the first value of a tag only.
            plugins.setdefault(value.tag, value.metadata.plugin_data.plugin_name or "scalars")
            if plugins[value.tag] != "scalars" or value.WhichOneof("value") != "tensor":
                continue
            array = tensor_util.make_ndarray(value.tensor)
            if array.ndim == 0 and array.dtype.kind in "fiub":
                events.append((value.tag, int(event.step), float(array)))
    times += [math.inf] * (2 - len(times))
    rel = path.parent.relative_to(logdir).as_posix()
    prefix = "" if rel == "." else rel + "/"
    return tuple(times), _natural_key(str(path)), prefix, events


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

    The panels share the step axis (x); each has its own value axis (y) and
    shows the last (raw) value in its heading. Non-finite values leave gaps.
    Drawn with matplotlib's Agg renderer (no display needed), then the file is
    replaced atomically.

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
        ImportError: if matplotlib is not installed.
    """
    path = check_output(path, ".png")
    _check_series(series)
    smooth([], smoothing)  # validates the weight before drawing
    if log_y:
        _check_positive(series)
    width, height = (int(v) for v in size)
    rows, cols = _grid(len(series))
    if width / cols < _MIN_PANEL[0] or (height - _HEADER) / rows < _MIN_PANEL[1]:
        raise ValueError(
            f"Size {width}x{height} is too small for {len(series)} panels ({rows} rows x "
            f"{cols} columns need at least {_MIN_PANEL[0]}x{_MIN_PANEL[1]} pixels each)"
        )
    figure_module = _require("matplotlib.figure", "line_chart")
    fig = figure_module.Figure(
        figsize=(width / _DPI, height / _DPI), dpi=_DPI, layout="constrained"
    )
    axes = fig.subplots(rows, cols, sharex=True, squeeze=False).ravel()
    for i, (ax, (tag, (steps, values))) in enumerate(zip(axes, series.items(), strict=False)):
        _panel(ax, tag, steps, values, f"C{i % 10}", log_y, smoothing)
    for ax in axes[len(series) :]:
        ax.set_visible(False)
    for ax in axes[: len(series)][-cols:]:
        ax.xaxis.set_tick_params(labelbottom=True)  # the last row, whatever its length
    fig.suptitle(title or "Training curves", x=0.01, ha="left")
    legend = [("raw", RAW_ALPHA if smoothing else 1, 1 if smoothing else 1.5)]
    if smoothing:
        legend.append((f"smoothed (EMA {smoothing:g})", 1, 2))
    lines = _require("matplotlib.lines", "line_chart")
    handles = [lines.Line2D([], [], color="#444444", alpha=a, lw=w) for _, a, w in legend]
    fig.legend(handles, [label for label, _, _ in legend], loc="outside upper right", ncols=2)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return path


def _panel(ax, tag, steps, values, color, log_y, smoothing):
    """One tag's curves, heading and grid on `ax`."""
    values = np.where(np.isfinite(values), values, np.nan)  # inf leaves a gap too
    finite = values[np.isfinite(values)]
    marker = "o" if finite.size == 1 else None  # a lone point is still visible
    if smoothing:
        ax.plot(steps, values, color=color, alpha=RAW_ALPHA, lw=1, marker=marker)
        ax.plot(steps, smooth(values, smoothing), color=color, lw=2, marker=marker)
    else:
        ax.plot(steps, values, color=color, lw=1.5, marker=marker)
    if log_y and finite.size:
        ax.set_yscale("log")
    note = f"last {format_number(finite[-1], 4)}" if finite.size else "no finite values"
    if finite.size and finite.size < len(values):
        note += f" ({len(values) - finite.size} non-finite)"
    ax.set_title(tag, loc="left", fontsize="medium")
    ax.set_title(note, loc="right", fontsize="small", color="#555555")
    ax.grid(True, color="#e6e6e6")
    ax.tick_params(labelsize="small")


def _check_positive(series):
    for tag, (_, values) in series.items():
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() <= 0:
            raise ValueError(f"log_y needs positive values; {tag!r} goes down to {finite.min()}")


def format_number(value, digits=6):
    """Short label: up to `digits` significant digits, compact exponent (1.5e6, 2e-5)."""
    text = f"{value:.{digits}g}"
    mantissa, sep, exponent = text.partition("e")
    if sep:
        text = f"{mantissa}e{int(exponent)}"
    return "0" if text == "-0" else text
