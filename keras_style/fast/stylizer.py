"""Fast stylization with a trained feed-forward network: load once, stylize many.

`FastStylizer` takes a `model.keras` path (or a `keras.Model`), compiles the
call once per backend, and stylizes single images, batches and lists of
images of any size, with optional original colours and a strength blend.

Very large images are stylized in overlapping tiles blended with cosine
feathering. Instance normalization would make each tile normalize with its
own statistics, which shows as tile-shaped changes of contrast; so tiles are
run through a copy of the network whose instance-norm layers use statistics
measured once on the whole image (exact when the image fits `stats_size`,
otherwise on a downscaled copy). Away from the tile borders the tiled result
then equals the untiled one.

Inference runs on a copy of the network made by `keras_style.fast.graph`:
same weights, slow layer chains rewritten into identical but cheaper
computations (a quarter less CPU time), and optionally bfloat16 compute
(`precision="bfloat16"`: on CPUs with AMX about 40% of the plain
float32 model's time, at 54 to 58 dB PSNR from the float32 result).
"""

import math
from pathlib import Path

import keras
import numpy as np
from keras import ops

from keras_style.core import backend, cloning, images, vgg
from keras_style.core import layers as ks_layers
from keras_style.core.transformer_net import MIN_SIDE
from keras_style.fast import graph as fast_graph

#: Images with more pixels than this are tiled when `tile_size` is None.
MAX_UNTILED_PIXELS = 2048 * 2048

#: Tile side used by automatic tiling.
DEFAULT_TILE_SIZE = 1024


def _compile(model):
    """The model's forward pass as one compiled function of a float32 NHWC batch.

    Under TensorFlow the function is traced once for single images of any
    size and called per image: a static batch of one lets instance norm run
    as one fused kernel (`fast_graph.FusedInstanceNormalization`), and on a
    CPU a batch costs its images' sum anyway.
    """

    def forward(x):
        return model(x, training=False)

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec((1, None, None, 3), tf.float32)
        fn = backend.compile_forward(forward, model.variables, input_signature=[spec])
        return lambda x: np.concatenate([fn(x[i : i + 1]).numpy() for i in range(len(x))])
    fn = backend.compile_forward(forward, model.variables)
    return lambda x: np.asarray(fn(x))


class _FixedStatsNorm(keras.layers.Layer):
    """Instance norm with per-channel statistics held in variables (tiled inference only).

    With `collect` set, a call measures the statistics of its (single-image)
    input, stores them and normalizes with them; otherwise it normalizes with
    the stored ones, so every tile of an image shares them.
    """

    def __init__(self, epsilon=1e-5, center=True, scale=True, **kwargs):
        super().__init__(**kwargs)
        self.epsilon, self.center, self.scale = epsilon, center, scale
        self.collect = False

    def build(self, input_shape):
        # autocast=False: under a mixed policy the (float32) math below reads them as float32.
        def weight(name, trainable=True):
            return self.add_weight(
                name=name, shape=(input_shape[-1],), trainable=trainable, autocast=False
            )

        self.gamma = weight("gamma") if self.scale else None
        self.beta = weight("beta") if self.center else None
        self.mean = weight("mean", trainable=False)
        self.var = weight("var", trainable=False)

    def call(self, x):
        x = ops.cast(x, "float32")
        if self.collect:
            self.mean.assign(ops.mean(x, axis=(0, 1, 2)))
            d = x - ops.mean(x, axis=(0, 1, 2))
            self.var.assign(ops.mean(d * d, axis=(0, 1, 2)))
        y = (x - self.mean) * ops.rsqrt(self.var + self.epsilon)
        if self.gamma is not None:
            y = y * self.gamma
        if self.beta is not None:
            y = y + self.beta
        return ops.cast(y, self.compute_dtype)


def _shared_stats_copy(model):
    """A copy of `model` whose InstanceNormalization layers become `_FixedStatsNorm`s."""

    def clone(layer):
        if isinstance(layer, ks_layers.InstanceNormalization):
            return _FixedStatsNorm(
                layer.epsilon, layer.center, layer.scale, name=layer.name, dtype=layer.dtype_policy
            )
        return cloning.copy_layer(layer)

    copy = cloning.clone_functional(model, clone)
    return copy, [layer for layer in copy.layers if isinstance(layer, _FixedStatsNorm)]


def _inference_model(model, precision):
    """The network `FastStylizer` runs: `fast_graph.inference_copy`, or `model` itself.

    Models that are not Functional (subclassed ones) cannot be copied: they
    run as they are in float32 and are refused for lower precisions.
    """
    if fast_graph.is_functional(model):
        return fast_graph.inference_copy(model, precision)
    if precision != "float32":
        raise ValueError(f"precision={precision!r} needs a Functional model, got {type(model)}")
    return model


def _ramp(length, overlap, start, end):
    """1-D blending weights: cosine ramps over `overlap` at the sides that have a neighbour."""
    w = np.ones(length, np.float32)
    if overlap <= 0:
        return w
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap, dtype=np.float32) + 0.5) / overlap)
    if start:
        w[:overlap] = ramp
    if end:
        w[length - overlap :] = ramp[::-1]
    return w


#: Tile offsets are multiples of this (the network's total stride), so every tile
#: sees the same downsampling grid as the whole image.
_ALIGN = 4


def _tile_spans(size, tile, overlap):
    """(start, length) of tiles covering [0, size), overlapping by >= `overlap`.

    Starts are multiples of `_ALIGN`; the last tile runs to the end, so it may
    be up to `_ALIGN - 1` pixels longer than `tile`.
    """
    if size <= tile:
        return [(0, size)]
    count = math.ceil((size - overlap) / (tile - overlap))
    last = (size - tile) // _ALIGN * _ALIGN
    starts = sorted({round(i * last / (count - 1) / _ALIGN) * _ALIGN for i in range(count)})
    return [(start, tile if start < last else size - start) for start in starts]


def _is_batch(content):
    return (
        not isinstance(content, (str, Path))
        and hasattr(content, "shape")
        and len(content.shape) == 4
        and content.shape[0] != 1
    )


class FastStylizer:
    """Stylizes images with a trained feed-forward network (e.g. a `TransformerNet`).

    Args:
        model: path to a `.keras` file, or a `keras.Model` mapping [0, 255]
            RGB batches to [0, 255] RGB batches of the same size.
        batch_size: images (or tiles) run together.
        stats_size: long side of the copy used to measure the instance-norm
            statistics for tiled images.
        precision: compute precision: "auto" (default: "bfloat16" where
            the hardware runs it natively, see `vgg.resolve_precision`, and
            the network is Functional; else "float32"), "float32" (the
            model's results up to rounding) or "bfloat16" (bfloat16
            activations and convolutions with float32 weights, norm
            statistics and output; needs a Functional model). At
            512x512 on a 2-core CPU with AMX, a width-1.0 network takes
            about 77 ms in "bfloat16" and 260 ms in "float32"
            (bench/bench_keras_inference.py); on real photos through the
            bundled networks "bfloat16" stays at 55 to 59 dB PSNR (SSIM
            0.9999) from float32. On AMD Zen 4
            (AVX512_BF16) "bfloat16" takes 0.70x the float32 time; on Intel
            CPUs without AMX it is slower (docs/precision.md).

    Example:

    ```python
    stylizer = FastStylizer("runs/starry/model.keras")
    out = stylizer.stylize("photo.jpg", max_size=1024, strength=0.8)
    images.save_image(out, "photo_starry.jpg")
    exact = FastStylizer("runs/starry/model.keras", precision="float32")
    ```
    """

    def __init__(self, model, batch_size=4, stats_size=1024, precision="auto"):
        auto = precision == "auto"
        precision = fast_graph.check_precision(vgg.resolve_precision(precision))
        if isinstance(model, (str, Path)):
            from keras_style.fast import styles

            model = styles.resolve_model(model)  # a .keras path or a bundled style name
        if not isinstance(model, keras.Model):
            raise ValueError(f"model must be a .keras path or a keras.Model, got {type(model)}")
        if batch_size < 1 or stats_size < MIN_SIDE:
            raise ValueError(f"Bad batch_size {batch_size} or stats_size {stats_size}")
        self.model = model
        self.batch_size = batch_size
        self.stats_size = stats_size
        if auto and not fast_graph.is_functional(model):
            precision = "float32"  # only Functional networks can be rewritten for bfloat16
        self.precision = precision
        self._net = _inference_model(model, precision)
        self._run = _compile(self._net)
        self._tiled = None  # (copy, its norm layers, its compiled call), built on first use

    def stylize(
        self,
        content,
        max_size=None,
        preserve_color=False,
        strength=1.0,
        tile_size=None,
        overlap=64,
    ):
        """Stylizes one image, a batch, or a list of images.

        Args:
            content: an image accepted by `keras_style.core.images.load_image` (path,
                PIL image, (H, W, C) array...), an (N, H, W, 3) batch, or a
                list of such images (sizes may differ).
            max_size: shrink images whose long side exceeds this first.
            preserve_color: keep the content's colours (luminance transfer).
            strength: 0 returns the content, 1 the full stylization; values
                between blend the two.
            tile_size: None tiles automatically above `MAX_UNTILED_PIXELS`;
                0 never tiles; a side in pixels always tiles larger images.
            overlap: pixels shared by neighbouring tiles, cross-faded.

        Returns:
            float32 [0, 255] RGB: (H, W, 3) for one image, (N, H, W, 3) for a
            batch, a list for a list.

        Raises:
            ValueError: on bad images or options.
        """
        self._check_options(max_size, strength, tile_size, overlap)
        options = (max_size, preserve_color, float(strength), tile_size, overlap)
        if isinstance(content, (list, tuple)):
            return [self._one(item, *options) for item in content]
        if _is_batch(content):
            batch = np.stack([self._prepare(image, max_size) for image in np.asarray(content)])
            return self._finish(
                batch, self._stylize_batch(batch, tile_size, overlap), *options[1:3]
            )
        return self._one(content, *options)

    @staticmethod
    def _check_options(max_size, strength, tile_size, overlap):
        if not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        if max_size is not None and max_size < MIN_SIDE:
            raise ValueError(f"max_size must be at least {MIN_SIDE}, got {max_size}")
        if tile_size is not None and tile_size != 0 and tile_size < 4 * MIN_SIDE:
            raise ValueError(f"tile_size must be 0 or at least {4 * MIN_SIDE}, got {tile_size}")
        if tile_size and not 0 <= overlap < tile_size // 2:
            raise ValueError(f"overlap must be in [0, tile_size / 2), got {overlap}")

    def _one(self, content, max_size, preserve_color, strength, tile_size, overlap):
        image = self._prepare(content, max_size)[None]
        stylized = self._stylize_batch(image, tile_size, overlap)
        return self._finish(image, stylized, preserve_color, strength)[0]

    @staticmethod
    def _prepare(content, max_size):
        image = images.load_image(content)
        return images.resize(image, images.fit_size(image.shape, max_size=max_size))

    @staticmethod
    def _finish(content, stylized, preserve_color, strength):
        if preserve_color:
            stylized = np.asarray(images.transfer_luminance(stylized, content))
        if strength < 1.0:
            stylized = strength * stylized + (1.0 - strength) * content
        return np.clip(stylized, 0.0, 255.0).astype(np.float32)

    def _stylize_batch(self, batch, tile_size, overlap):
        height, width = batch.shape[1:3]
        if tile_size is None:
            tile_size = DEFAULT_TILE_SIZE if height * width > MAX_UNTILED_PIXELS else 0
        if tile_size and max(height, width) > tile_size:
            return np.stack([self._tiled_image(image, tile_size, overlap) for image in batch])
        return self._untiled(batch)

    def _untiled(self, batch):
        height, width = batch.shape[1:3]
        pad_h, pad_w = max(0, MIN_SIDE - height), max(0, MIN_SIDE - width)
        if pad_h or pad_w:  # too small for the network's reflection padding
            batch = np.pad(batch, [(0, 0), (0, pad_h), (0, pad_w), (0, 0)], mode="edge")
        outputs = [
            self._run(batch[i : i + self.batch_size]) for i in range(0, len(batch), self.batch_size)
        ]
        return np.concatenate(outputs)[:, :height, :width]

    def _tiled_image(self, image, tile, overlap):
        """One (H, W, 3) image in overlapping tiles sharing whole-image norm statistics."""
        copy, norms, run = self._tiled_model()
        self._measure_stats(copy, norms, image)
        height, width = image.shape[:2]
        boxes = [
            (top, left, h, w)
            for top, h in _tile_spans(height, tile, overlap)
            for left, w in _tile_spans(width, tile, overlap)
        ]
        total = np.zeros((height, width, 3), np.float32)
        weight = np.zeros((height, width, 1), np.float32)
        for shape in sorted({box[2:] for box in boxes}):
            same = [box for box in boxes if box[2:] == shape]
            for i in range(0, len(same), self.batch_size):
                group = same[i : i + self.batch_size]
                tiles = np.stack([image[t : t + h, s : s + w] for t, s, h, w in group])
                for (top, left, h, w), out in zip(group, run(tiles), strict=True):
                    mask = np.outer(
                        _ramp(h, overlap, top > 0, top + h < height),
                        _ramp(w, overlap, left > 0, left + w < width),
                    )[..., None]
                    total[top : top + h, left : left + w] += mask * out
                    weight[top : top + h, left : left + w] += mask
        return total / np.maximum(weight, 1e-8)

    def _tiled_model(self):
        if self._tiled is None:
            copy, norms = _shared_stats_copy(self._net)
            self._tiled = (copy, norms, _compile(copy))
        return self._tiled

    def _measure_stats(self, copy, norms, image):
        """Runs the whole image (shrunk to `stats_size`) once, storing every norm's statistics."""
        small = images.resize(image, images.fit_size(image.shape, max_size=self.stats_size))
        for norm in norms:
            norm.collect = True
        try:
            copy(small[None], training=False)
        finally:
            for norm in norms:
                norm.collect = False
