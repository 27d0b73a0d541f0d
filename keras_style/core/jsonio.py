"""JSON files of the package: presets read, reports and cards written (atomic, valid JSON).

JSON has no infinity or NaN. Every report writes a non-finite number (e.g.
the PSNR of identical images) as `null`, so any JSON reader can load it.
"""

import json
import math
from pathlib import Path

import numpy as np

from keras_style.core.images import atomic_write


def finite(value):
    """`value` with every non-finite float (at any depth of dicts and lists) turned into None."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_json(path, data, sort_keys=False):
    """Writes `data` atomically as indented JSON (non-finite numbers as null); returns the path."""
    path = Path(path)
    with atomic_write(path) as tmp:
        Path(tmp).write_text(
            json.dumps(finite(data), indent=2, sort_keys=sort_keys, allow_nan=False) + "\n"
        )
    return path


def read_preset(path):
    """The JSON object in a preset or config file, as a dict.

    Keys starting with "_" are comments and dropped.

    Raises:
        ValueError: if the file is missing, not JSON, or not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Config file not found: {path}")
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return {key: value for key, value in values.items() if not key.startswith("_")}
