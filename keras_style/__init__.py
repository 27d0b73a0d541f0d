"""keras-style: neural style transfer for Keras 3 and TensorFlow.

Start with `keras_style.stylize(photo, painting)` (slow, iterative) or
`keras_style.stylize(photo, style="starry_night")` (a bundled fast network);
see the README.
"""

__version__ = "0.1.0"

from keras_style.api import stylize  # noqa: E402
from keras_style.fast import FastStylizer  # noqa: E402
from keras_style.styles import list_styles, load_style  # noqa: E402
from keras_style.transformer_net import TransformerNet, build_transformer_net  # noqa: E402
from keras_style.video import stylize_video  # noqa: E402

__all__ = [
    "FastStylizer",
    "TransformerNet",
    "__version__",
    "build_transformer_net",
    "list_styles",
    "load_style",
    "stylize",
    "stylize_video",
]
