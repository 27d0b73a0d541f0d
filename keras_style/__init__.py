"""keras-style: neural style transfer for Keras 3 and TensorFlow.

Start with `keras_style.stylize(photo, painting)` (slow, iterative) or
`keras_style.stylize(photo, style="starry_night")` (a bundled fast network);
see the README.

The public names are imported on first use (PEP 562), so `import keras_style`
and `keras-style --help` do not load Keras and its backend.
"""

import importlib

__version__ = "0.1.0"

#: Public name -> module that defines it.
_EXPORTS = {
    "stylize": "keras_style.api",
    "FastStylizer": "keras_style.fast",
    "list_styles": "keras_style.styles",
    "load_style": "keras_style.styles",
    "TransformerNet": "keras_style.transformer_net",
    "build_transformer_net": "keras_style.transformer_net",
    "stylize_video": "keras_style.video",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'keras_style' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
