"""keras-style: neural style transfer for Keras 3 and TensorFlow.

Start with `keras_style.stylize(photo, painting)` (slow, iterative) or
`keras_style.stylize(photo, style="starry_night")` (a bundled fast network);
see the README.

The public names are imported on first use (PEP 562), so `import keras_style`
and `keras-style --help` do not load Keras and its backend. Saved networks
need their layers registered before `keras.saving.load_model`: that happens
on `import keras_style` when Keras is already imported (the usual
`import keras` first), and otherwise on `import keras_style.core.transformer_net`
or any use of the package's models.
"""

import importlib
import sys

__version__ = "0.1.0"

#: Public name -> module that defines it.
_EXPORTS = {
    "stylize": "keras_style.api",
    "FastStylizer": "keras_style.fast.stylizer",
    "list_styles": "keras_style.fast.styles",
    "load_style": "keras_style.fast.styles",
    "TransformerNet": "keras_style.core.transformer_net",
    "build_transformer_net": "keras_style.core.transformer_net",
    "stylize_video": "keras_style.fast.video",
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


#: Modules whose import registers the package's serializable layers and models.
_SERIALIZABLE = ("keras_style.core.layers", "keras_style.core.transformer_net")

if "keras" in sys.modules:  # Keras is loaded anyway: register now, so load_model just works
    for _module in _SERIALIZABLE:
        importlib.import_module(_module)
