"""Float-equivalent rewrites of a trained network that make it survive integer quantization.

Full-integer TFLite models quantize every activation tensor per tensor: one
scale and zero point for all channels, fixed by the range seen on the
calibration photos. Two properties of the Johnson network waste that range,
and both can be removed without changing what the network computes in float:

* **Channel equalization before instance norm.** Instance normalization is
  invariant to a per-channel scale of its input and removes any per-channel
  offset, so a convolution that feeds it may have each output channel's
  kernel and bias multiplied by `k_c` and its bias shifted freely. Trained
  convolutions have channels whose spread differs by 10-100x and offsets of
  several standard deviations; under one per-tensor scale the small channels
  get a handful of levels, and instance norm then amplifies their rounding
  noise back to unit variance. Rescaling each channel to unit spread and
  centring it on zero gives every channel the same resolution. The epsilon
  of instance norm becomes a per-channel `eps * k_c**2` (one ADD of a
  constant vector instead of a scalar), so the rewrite is exact.
* **Clipping before the output tanh.** The pre-tanh activations of a trained
  stylizer reach +-100 or more where the output saturates, so a per-tensor
  scale leaves the useful range (|x| < 3) a few levels. `tanh(x)` and
  `tanh(L * clip(x / L, -1, 1))` differ by less than `127.5 * (1 - tanh(L))`
  in [0, 255] (0.006 for L = 5); dividing the last convolution by L lets the
  converter fuse the clip into it (RELU_N1_TO_1), so its int8 output spans
  exactly [-1, 1].

`rewrite_for_quantization` returns a rewritten copy (the trained model is
left untouched) and what it changed, including the float agreement between
the two networks on the calibration photos.

What still loses the most in full int8 after the rewrite is the upsampling
blocks and a tanh head, where every int8 step of the pre-tanh value is
directly an output error in [0, 255]. `float_head_layers` names them so the
converter can keep them in float.
"""

import re

import numpy as np

#: Default tanh clip limit L: output error at most 127.5 * (1 - tanh(5)) = 0.006 of 255.
TANH_LIMIT = 5.0
#: Smallest channel spread that is rescaled to 1 (caps the gain at 1 / MIN_SPREAD).
MIN_SPREAD = 0.05
#: Images per batch when measuring channel statistics.
_BATCH = 4


def _producer(layer):
    """The layer whose output is `layer`'s (single) input."""
    return layer.input._keras_history.operation


def _consumers(layer):
    return [node.operation for node in layer._outbound_nodes]


def _is_linear_conv(layer):
    import keras

    return isinstance(layer, keras.layers.Conv2D) and layer.get_config()["activation"] in (
        "linear",
        None,
    )


def conv_norm_pairs(model):
    """Names of (Conv2D, InstanceNormalization) pairs where the norm is the conv's only consumer.

    Only such convolutions may be rescaled per channel: nothing else sees
    their output.
    """
    from keras_style.core.layers import InstanceNormalization

    pairs = []
    for layer in model.layers:
        if not isinstance(layer, InstanceNormalization):
            continue
        conv = _producer(layer)
        if _is_linear_conv(conv) and conv.use_bias and _consumers(conv) == [layer]:
            pairs.append((conv.name, layer.name))
    return pairs


def tanh_heads(model):
    """Names of (Conv2D, tanh Activation) pairs where the tanh is the conv's only consumer."""
    import keras

    heads = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Activation):
            continue
        if getattr(layer.activation, "__name__", "") != "tanh":
            continue
        conv = _producer(layer)
        if _is_linear_conv(conv) and _consumers(conv) == [layer]:
            heads.append((conv.name, layer.name))
    return heads


def channel_statistics(model, conv_names, photos):
    """Per-channel offset and spread of convolution outputs over photos.

    Args:
        model: the Keras network.
        conv_names: the Conv2D layers to measure.
        photos: float32 `[N, H, W, 3]` in [0, 255], preprocessed as for inference.

    Returns:
        `{name: (mean, spread)}`: the per-channel mean of the per-image channel
        means, and the root mean square of the per-image channel standard
        deviations (what instance norm divides by).
    """
    import keras

    if not conv_names:
        return {}
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in conv_names])
    sums = {n: [] for n in conv_names}
    for start in range(0, len(photos), _BATCH):
        outputs = probe.predict_on_batch(photos[start : start + _BATCH])
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for name, y in zip(conv_names, outputs, strict=True):
            y = np.asarray(y, np.float64)
            sums[name].append((y.mean(axis=(1, 2)), y.var(axis=(1, 2))))
    stats = {}
    for name, parts in sums.items():
        means = np.concatenate([m for m, _ in parts])
        variances = np.concatenate([v for _, v in parts])
        stats[name] = (means.mean(axis=0), np.sqrt(variances.mean(axis=0)))
    return stats


def _clipped_tanh_class():
    import keras
    from keras import ops

    class ClippedTanh(keras.layers.Layer):
        """`tanh(limit * clip(x, -1, 1))`: the head tanh after its conv was divided by `limit`."""

        def __init__(self, limit, **kwargs):
            super().__init__(**kwargs)
            self.limit = float(limit)

        def call(self, inputs):
            return ops.tanh(self.limit * ops.clip(inputs, -1.0, 1.0))

        def get_config(self):
            return {**super().get_config(), "limit": self.limit}

    return ClippedTanh


def _clone(model, norm_names, tanh_names, limit):
    """Clones the network's graph (float32) with the named norms and tanhs replaced.

    Norms get a per-channel epsilon (`export_norm.ChannelEpsilonNormalization`,
    still the original value), tanhs become clipped tanhs; every other layer
    is a copy. Weights are copied.
    """
    from keras_style.core import cloning
    from keras_style.export.norm import ChannelEpsilonNormalization

    clipped_tanh = _clipped_tanh_class()

    def clone_layer(layer):
        if layer.name in tanh_names:
            return clipped_tanh(limit, name=layer.name, dtype="float32")
        cls = ChannelEpsilonNormalization if layer.name in norm_names else None
        return cloning.copy_layer(layer, cls, dtype="float32")

    return cloning.clone_functional(model, clone_layer)


def _equalize(clone, pairs, stats):
    """Scales and centres each conv's channels; compensates the norm's epsilon."""
    changes = {}
    for conv_name, norm_name in pairs:
        conv, norm = clone.get_layer(conv_name), clone.get_layer(norm_name)
        kernel, bias = conv.get_weights()
        mean, spread = stats[conv_name]
        gain = 1.0 / np.maximum(spread, MIN_SPREAD)
        conv.set_weights([kernel * gain, (bias - mean) * gain])
        norm.channel_epsilon.assign(norm.epsilon * gain**2)
        changes[conv_name] = {
            "spread_min": float(spread.min()),
            "spread_max": float(spread.max()),
            "offset_max": float(np.abs(mean).max()),
        }
    return changes


def _scale_heads(clone, heads, limit):
    for conv_name, _ in heads:
        conv = clone.get_layer(conv_name)
        conv.set_weights([w / limit for w in conv.get_weights()])


def rewrite_for_quantization(model, photos, tanh_limit=TANH_LIMIT):
    """A float-equivalent copy of `model` whose activations quantize well per tensor.

    Args:
        model: the trained Keras network (not modified). Convolutions without
            bias, with a fused activation or with other consumers are left alone.
        photos: float32 `[N, H, W, 3]` calibration photos in [0, 255] (a few
            dozen suffice for the channel statistics).
        tanh_limit: clip limit L of the output tanh; None keeps it as is.

    Returns:
        `(clone, info)`: the rewritten network and a JSON-ready dict naming the
        equalized convolutions, the clipped heads and `float_psnr`, the PSNR
        (dB) between the two networks' float32 outputs on `photos`.
    """
    pairs = conv_norm_pairs(model)
    heads = tanh_heads(model) if tanh_limit else []
    clone = _clone(model, {n for _, n in pairs}, {t for _, t in heads}, tanh_limit)
    stats = channel_statistics(clone, [c for c, _ in pairs], photos)
    changes = _equalize(clone, pairs, stats)
    _scale_heads(clone, heads, tanh_limit)
    return clone, {
        "equalized_convolutions": changes,
        "clipped_tanh": {t: {"conv": c, "limit": tanh_limit} for c, t in heads},
        "float_psnr": float_agreement(model, clone, photos),
    }


def float_agreement(model, clone, photos):
    """PSNR (dB) between two networks' float32 outputs on photos (inf when identical)."""
    from keras_style.core import metrics

    a = np.concatenate(
        [model.predict_on_batch(photos[i : i + _BATCH]) for i in range(0, len(photos), _BATCH)]
    )
    b = np.concatenate(
        [clone.predict_on_batch(photos[i : i + _BATCH]) for i in range(0, len(photos), _BATCH)]
    )
    return metrics.psnr(np.asarray(b, np.float32), np.asarray(a, np.float32))


def clip_heads(model):
    """Names of the "clip" and "residual" output heads' layer chains.

    A clip head is (Conv2D, Rescaling, StraightThroughClip); a residual head
    adds the input image between the Rescaling and the clip:
    (Conv2D, Rescaling, Add, StraightThroughClip).
    """
    import keras

    from keras_style.core.layers import StraightThroughClip

    heads = []
    for layer in model.layers:
        if not isinstance(layer, StraightThroughClip):
            continue
        chain = [layer.name]
        scale = _producer(layer)
        if isinstance(scale, keras.layers.Add) and _consumers(scale) == [layer]:
            chain.insert(0, scale.name)
            inputs = [t._keras_history.operation for t in scale.input]
            scale = next((p for p in inputs if isinstance(p, keras.layers.Rescaling)), None)
        if not isinstance(scale, keras.layers.Rescaling) or len(_consumers(scale)) != 1:
            continue
        conv = _producer(scale)
        if _is_linear_conv(conv) and _consumers(conv) == [scale]:
            heads.append((conv.name, scale.name, *chain))
    return heads


def float_head_layers(model, blocks=1, clip_head=True):
    """Layer names an int8 model keeps in float: the conv blocks before the head, and the head.

    The conv blocks before the head (in `TransformerNet`, the upsampling
    blocks: conv, instance norm, ReLU) carry the strokes' colour detail on
    few channels; int8 rounding there reaches the output nearly unchanged:
    keeping both upsampling blocks in float takes the bundled styles' int8
    models from about 26 to 32 dB against float32. A tanh head maps each
    int8 step of its pre-tanh value to an output error, and a residual head
    adds the input photo, so both always stay in float. A clip head's int8
    output steps are about one grey level of [0, 255]: on the bundled styles,
    quantizing it costs 0.1-0.6 dB and saves the largest float convolution
    (`bench/bench_int8_float_blocks.py`).

    Args:
        model: the Keras network.
        blocks: conv blocks before each head to keep in float too (0: the head only).
        clip_head: keep a plain clip head (conv, scaling, clip) in float too.
    """
    if blocks < 0:
        raise ValueError(f"blocks must be 0 or more, got {blocks}")
    names = []
    for chain in [*tanh_heads(model), *clip_heads(model)]:
        names += _blocks_before(model.get_layer(chain[0]), blocks)
        if clip_head or not _is_plain_clip_head(model, chain):
            names += chain
    return names


def _is_plain_clip_head(model, chain):
    """Whether a head chain is (conv, scaling, clip): no tanh, no residual add."""
    from keras_style.core.layers import StraightThroughClip

    return len(chain) == 3 and isinstance(model.get_layer(chain[-1]), StraightThroughClip)


def _blocks_before(conv, blocks):
    """Single-input, single-consumer layers back to the `blocks`-th conv before `conv`."""
    import keras

    names, layer = [], conv
    for _ in range(blocks):
        while True:
            layer = _producer(layer)
            if (
                isinstance(layer, keras.layers.InputLayer)
                or isinstance(layer.input, (list, tuple))
                or len(_consumers(layer)) != 1
            ):
                return names
            names.append(layer.name)
            if isinstance(layer, keras.layers.Conv2D):
                break
    return names


def tensor_names_of_layers(tensor_names, layer_names):
    """The converted model's tensor names that belong to the given Keras layers.

    TFLite tensor names carry the TF name scope of the layer that produced
    them (`model_1/head_conv_1/convolution`); fused ops join several names with `;`.
    """
    patterns = [re.compile(rf"(^|/){re.escape(name)}(_\d+)?/") for name in layer_names]
    return [t for t in tensor_names if any(p.search(t) for p in patterns)]
