"""keras-style: neural style transfer for Keras 3 and TensorFlow."""

__version__ = "0.1.0"
