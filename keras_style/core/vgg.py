"""The frozen VGG loss network: building it, its preprocessing and its layer names.

`keras.applications` VGG19 (default) or VGG16 with ImageNet weights, or a
local weights file, cut after the deepest layer that the losses read. The
extractor takes the package's pixel convention (float32 RGB in [0, 255]) and
does VGG's own preprocessing (BGR minus the ImageNet mean) inside, so no
caller ever handles VGG-space pixels.
"""

from pathlib import Path

import keras
from keras import ops

BACKBONES = ("vgg19", "vgg16")

#: Compute precisions of the loss network. "auto" picks bfloat16 where the hardware
#: runs it natively (see `resolve_precision`).
PRECISIONS = ("auto", "float32", "bfloat16")

#: CPU feature flags (Linux /proc/cpuinfo) that make bfloat16 convolutions faster than
#: float32 on any vendor: AMX tiles.
_BF16_CPU_FLAGS = ("amx_bf16",)

#: {vendor_id: flags} that make them faster on that vendor's cores only. AMD Zen 4/5 run
#: AVX512_BF16 dot products at the float32 FMA rate with twice the products per lane:
#: bfloat16 is about 2x faster there. Intel cores without AMX issue them on one port
#: where float32 FMAs use two: 1.5-2.4x slower. Both measured by
#: `bench/bench_precision.py` (docs/precision/).
_BF16_VENDOR_FLAGS = {"AuthenticAMD": ("avx512_bf16",)}

#: ImageNet mean in BGR order, as used by `keras.applications.vgg19.preprocess_input`.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)

#: Gatys et al. (2016) defaults, keyed by standard Keras VGG layer names.
DEFAULT_CONTENT_LAYERS = {"block4_conv2": 1.0}
DEFAULT_STYLE_LAYERS = {f"block{i}_conv1": 1.0 for i in range(1, 6)}


class WeightsUnavailableError(RuntimeError):
    """Raised when the ImageNet VGG weights can be neither downloaded nor found."""


def preprocess(images):
    """RGB [0, 255] -> VGG input (BGR minus the ImageNet mean). keras.ops, no copy."""
    images = ops.convert_to_tensor(images, "float32")
    return ops.flip(images, axis=-1) - ops.convert_to_tensor(IMAGENET_MEAN_BGR, "float32")


def deprocess(features_input):
    """Inverse of `preprocess`: VGG input -> RGB [0, 255] (not clipped)."""
    bgr = ops.convert_to_tensor(features_input, "float32") + ops.convert_to_tensor(
        IMAGENET_MEAN_BGR, "float32"
    )
    return ops.flip(bgr, axis=-1)


@keras.saving.register_keras_serializable(package="keras_style")
class VGGPreprocess(keras.layers.Layer):
    """Layer form of `preprocess`, so the extractor accepts [0, 255] RGB."""

    def call(self, images):
        return preprocess(images)


def bf16_is_fast(vendor, flags):
    """Whether a CPU with this vendor_id and these feature flags runs bfloat16 faster."""
    wanted = _BF16_CPU_FLAGS + _BF16_VENDOR_FLAGS.get(vendor, ())
    return any(flag in flags for flag in wanted)


def _cpu_has_bf16(path="/proc/cpuinfo"):
    fields = {}
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if "vendor_id" in fields and "flags" in fields:
                    break
    except OSError:
        return False
    return bf16_is_fast(fields.get("vendor_id", ""), fields.get("flags", "").split())


def _on_accelerator():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    return False


def resolve_precision(precision):
    """Resolves "auto": bfloat16 on GPUs and on CPUs where it is faster, else float32.

    bfloat16 convolutions with float32 weights and statistics make the slow
    path's VGG forward and backward pass 1.7x faster on a CPU with AMX and
    about 2x faster on AMD Zen 4 (AVX512_BF16), with Gram and content losses
    within 0.1 % of float32. Elsewhere (AVX2, or Intel AVX512_BF16 without AMX)
    oneDNN's bfloat16 kernels are 1.5-2.4x slower than float32
    (`bench/bench_precision.py`), hence the hardware check (`bf16_is_fast`).

    Raises:
        ValueError: for a precision not in `PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision != "auto":
        return precision
    return "bfloat16" if _on_accelerator() or _cpu_has_bf16() else "float32"


def _layer_order(backbone):
    blocks = (2, 2, 4, 4, 4) if backbone == "vgg19" else (2, 2, 3, 3, 3)
    return [f"block{b}_conv{i}" for b, n in enumerate(blocks, 1) for i in range(1, n + 1)]


def _build_backbone(backbone, weights):
    app = keras.applications.VGG19 if backbone == "vgg19" else keras.applications.VGG16
    if weights in (None, "imagenet"):
        try:
            return app(include_top=False, weights=weights, input_shape=(None, None, 3))
        except Exception as e:  # download failures surface as many exception types
            raise WeightsUnavailableError(
                f"Could not download the ImageNet {backbone.upper()} weights ({e}). "
                "Pass a local Keras weights file with vgg_weights=PATH "
                "(command line: --vgg-weights PATH), e.g. a VGG16 notop file with "
                "backbone='vgg16'."
            ) from e
    path = Path(weights)
    if not path.is_file():
        raise ValueError(f"VGG weights file not found: {path}")
    model = app(include_top=False, weights=None, input_shape=(None, None, 3))
    try:
        model.load_weights(str(path))
    except Exception as e:
        raise ValueError(
            f"Cannot load {path} into a {backbone.upper()} (include_top=False) model: {e}. "
            "Is the backbone option right?"
        ) from e
    return model


class FeatureExtractor:
    """Frozen multi-output VGG: RGB [0, 255] batch -> {layer name: features}.

    Args:
        layers: iterable of Keras VGG layer names to expose.
        backbone: "vgg19" or "vgg16".
        weights: "imagenet" (downloaded and cached by Keras), None (random,
            for tests) or a path to a local `.weights.h5`/`.h5` file.
        precision: "float32", "bfloat16" (convolutions after the first one
            compute in bfloat16 with float32 weights; the first one sees the
            full-precision pixels) or "auto" (`resolve_precision`). Features
            are returned as float32 either way.
    """

    def __init__(self, layers, backbone="vgg19", weights="imagenet", precision="float32"):
        if backbone not in BACKBONES:
            raise ValueError(f"Unknown backbone {backbone!r}; choose one of {BACKBONES}")
        known = _layer_order(backbone)
        self.layers = sorted(set(layers), key=known.index) if set(layers) <= set(known) else None
        if self.layers is None:
            unknown = sorted(set(layers) - set(known))
            raise ValueError(f"Unknown {backbone} layer names {unknown}; valid names: {known}")
        self.backbone = backbone
        self.precision = resolve_precision(precision)
        vgg = _build_backbone(backbone, weights)
        vgg.trainable = False
        inputs = keras.Input((None, None, 3), name="rgb_0_255")
        x = VGGPreprocess(name="vgg_preprocess")(inputs)
        outputs = {}
        for layer in vgg.layers[1:]:
            x = self._copy(layer, first=layer.name == "block1_conv1")(x)
            if layer.name in self.layers:
                outputs[layer.name] = x
            if len(outputs) == len(self.layers):
                break  # nothing deeper is needed: skip the rest of the network
        self.model = keras.Model(inputs, outputs, name=f"{backbone}_features")
        self.model.trainable = False
        self._subsets = {tuple(self.layers): self.model}

    def _copy(self, layer, first):
        """`layer` itself in float32; a bfloat16-policy copy with the same weights otherwise."""
        if self.precision == "float32" or first:
            return layer
        copy = layer.__class__.from_config({**layer.get_config(), "dtype": "mixed_bfloat16"})
        copy.build(layer.input.shape)
        copy.set_weights(layer.get_weights())
        copy.trainable = False
        return copy

    def _subset(self, layers):
        """The extractor's model cut after the deepest of `layers` (same weights), cached."""
        key = tuple(name for name in self.layers if name in set(layers))
        if len(key) != len(set(layers)):
            unknown = sorted(set(layers) - set(self.layers))
            raise ValueError(f"The feature extractor does not expose layers {unknown}")
        if key not in self._subsets:
            outputs = {name: self.model.output[name] for name in key}
            self._subsets[key] = keras.Model(self.model.input, outputs)
        return self._subsets[key]

    def __call__(self, images, layers=None, native_dtype=False):
        """Returns {layer name: (N, h, w, c) float32 features} for an RGB [0, 255] batch.

        Args:
            images: the batch.
            layers: the layers wanted (default: all of them); the network runs
                only as deep as the deepest one (e.g. content targets at
                block4_conv2 skip block4_conv3 and block5_conv1).
            native_dtype: return the features in the dtype they were computed
                in (bfloat16 under a bfloat16 `precision`), uncast.
        """
        model = self.model if layers is None else self._subset(layers)
        features = model(images, training=False)
        if self.precision == "float32" or native_dtype:
            return features
        return {name: ops.cast(value, "float32") for name, value in features.items()}
