"""keras-style: neural style transfer for Keras 3 and TensorFlow.

Start with `keras_style.stylize(photo, painting)`; see the README.
"""

__version__ = "0.1.0"

from keras_style.api import stylize  # noqa: E402

__all__ = ["stylize", "__version__"]
