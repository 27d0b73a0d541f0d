"""Built loss networks kept for reuse: building VGG costs seconds, compiling a step more.

One home for the caches that the Python API, the distillation dataset writer,
the evaluation and the style report share, below all of them.
"""

from keras_style.core import vgg
from keras_style.slow import optimize

_EXTRACTORS = {}
_STYLIZERS = {}


def get_extractor(layers, backbone="vgg19", vgg_weights="imagenet", precision="float32"):
    """A cached `vgg.FeatureExtractor`: building VGG costs seconds, reuse it."""
    precision = vgg.resolve_precision(precision)
    key = (tuple(sorted(layers)), backbone, str(vgg_weights), precision)
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = vgg.FeatureExtractor(layers, backbone, vgg_weights, precision)
    return _EXTRACTORS[key]


def get_gatys_stylizer(loss_config, backbone="vgg19", vgg_weights="imagenet", precision="auto"):
    """A cached `optimize.GatysStylizer` (its compiled step is reused across calls)."""
    precision = vgg.resolve_precision(precision)
    key = (repr(loss_config), backbone, str(vgg_weights), precision)
    if key not in _STYLIZERS:
        extractor = get_extractor(loss_config.layers, backbone, vgg_weights, precision)
        _STYLIZERS[key] = optimize.GatysStylizer(extractor, loss_config)
    return _STYLIZERS[key]


def clear():
    """Forgets every cached network (e.g. after the VGG weights file changed)."""
    _EXTRACTORS.clear()
    _STYLIZERS.clear()
