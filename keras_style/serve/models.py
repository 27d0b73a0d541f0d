"""The fast networks a server offers: bundled styles and model files, each loaded once.

A `ModelRegistry` lists what can be picked (the bundled styles plus the
`.keras` and `.tflite` files named when the server started) and hands out one
shared stylizer per entry, built on first use and kept: loading a network
and tracing its graph costs seconds, a request must not pay it again.
"""

import threading
from pathlib import Path

import numpy as np

from keras_style.core import images

#: Page folder holding a small thumbnail of each bundled style's painting.
THUMBS_DIR = Path(__file__).parent / "static" / "thumbs"


class TFLiteStylizer:
    """Stylizes with a `.tflite` file through LiteRT, like `FastStylizer.stylize` for one image.

    Dynamic-size models run at the photo's size; fixed-size ones (the GPU
    models of the exporter) run on the photo resized to their square input
    and the result is resized back.
    """

    def __init__(self, path, num_threads=2):
        from keras_style.export import verify as export_verify

        try:
            self._runner = export_verify.TFLiteRunner(Path(path), num_threads=num_threads)
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"Cannot load the TFLite model {path}: {e}") from e
        shape = [int(d) for d in self._runner.input_details["shape_signature"]]
        self.fixed = None if -1 in shape[1:3] else (shape[1], shape[2])

    def stylize(self, content, max_size=None, preserve_color=False, strength=1.0):
        from keras_style.fast.stylizer import FastStylizer

        FastStylizer._check_options(max_size, strength, None, 0)
        photo = FastStylizer._prepare(content, max_size)
        model_input = photo if self.fixed is None else images.resize(photo, self.fixed)
        out = self._runner(model_input[None])[0]
        out = images.resize(np.clip(out, 0, 255), photo.shape[:2])
        return FastStylizer._finish(photo[None], out[None], preserve_color, float(strength))[0]


def _entry_for_file(path):
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Model file not found: {path}")
    if path.suffix not in (".keras", ".tflite"):
        raise ValueError(f"{path} is not a .keras or .tflite model file")
    return {
        "name": path.stem,
        "title": path.name,
        "artist": "",
        "year": "",
        "kind": path.suffix[1:],
        "thumbnail": None,
        "path": str(path),
    }


def _entry_for_style(name):
    from keras_style.fast import styles

    painting = styles.style_card(name).get("painting", {})
    painting = painting if isinstance(painting, dict) else {"title": str(painting)}
    thumb = THUMBS_DIR / f"{name}.jpg"
    return {
        "name": name,
        "title": painting.get("title", name),
        "artist": painting.get("artist", ""),
        "year": str(painting.get("year", "")),
        "kind": "bundled",
        "thumbnail": f"/static/thumbs/{thumb.name}" if thumb.is_file() else None,
        "path": None,
    }


class ModelRegistry:
    """The styles a server offers, each built once and shared by every request.

    Args:
        model_files: `.keras` / `.tflite` files to offer besides the bundled styles.
        precision: `FastStylizer` precision for `.keras` networks and styles.
    """

    def __init__(self, model_files=(), precision="auto"):
        from keras_style.fast import styles

        entries = [_entry_for_style(name) for name in styles.list_styles()]
        entries += [_entry_for_file(path) for path in model_files]
        self._entries = {}
        for entry in entries:
            if entry["name"] in self._entries:
                raise ValueError(f"Two models are named {entry['name']!r}; rename one file")
            self._entries[entry["name"]] = entry
        self.precision = precision
        self._stylizers = {}
        self._lock = threading.Lock()

    def describe(self):
        """Public fields (name, title, artist, year, kind, thumbnail) of every entry."""
        return [{k: v for k, v in e.items() if k != "path"} for e in self._entries.values()]

    def check(self, name):
        """Raises ValueError naming the available styles when `name` is not one of them."""
        if name not in self._entries:
            available = ", ".join(self._entries) or "none"
            raise ValueError(f"Unknown style {name!r}; available: {available}")

    def stylizer(self, name):
        """The shared stylizer of `name`, built on first use (thread-safe)."""
        self.check(name)
        with self._lock:
            if name not in self._stylizers:
                self._stylizers[name] = self._build(self._entries[name])
            return self._stylizers[name]

    def _build(self, entry):
        if entry["kind"] == "tflite":
            return TFLiteStylizer(entry["path"])
        from keras_style.fast.stylizer import FastStylizer

        return FastStylizer(entry["path"] or entry["name"], precision=self.precision)
