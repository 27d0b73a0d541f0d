"""Perceptual losses (content, Gram style, total variation), normalised to be scale-free.

Classic implementations weight raw sums of squared features, so their loss
weights must be retuned by orders of magnitude whenever the image size, the
layers or the backbone change. Here every term is a *relative* error: the
squared error divided by the energy of its own target, averaged over layers
with weights that are normalised to sum to one. A value of 1 means "as far
as predicting zeros"; the same `content_weight`/`style_weight` therefore
balance well at any image size and with either VGG. All math is `keras.ops`,
so the losses run under TensorFlow and JAX alike.
"""

import dataclasses

import numpy as np
from keras import ops

from keras_style.core import vgg

_EPS = 1e-8

#: Key of the photo's tone map in `PerceptualLoss.content_targets` (when `tone_weight` > 0).
TONE_TARGET = "tone"

#: ITU-R BT.601 luma weights of R, G, B.
_LUMA = (0.299, 0.587, 0.114)


@dataclasses.dataclass
class LossConfig:
    """Which VGG layers the losses read and how the terms are weighted.

    Attributes:
        content_layers: {Keras VGG layer name: weight} for feature reconstruction.
        style_layers: {Keras VGG layer name: weight} for Gram matching.
        content_weight: weight of the (relative) content error.
        style_weight: weight of the (relative) Gram error.
        tv_weight: weight of the total-variation smoothness term.
        tone_weight: weight of the tone term: the relative error between the
            output's and the photo's local mean luminance (`tone_map`). Gram
            statistics ignore where light and dark are; a fast network trained
            on crops can satisfy them by turning dark objects light. 0 (the
            default) leaves the term out.
        tone_scale: side in pixels of the blocks `tone_map` averages over: the
            scale below which strokes may change the luminance freely.
    """

    content_layers: dict = dataclasses.field(
        default_factory=lambda: dict(vgg.DEFAULT_CONTENT_LAYERS)
    )
    style_layers: dict = dataclasses.field(default_factory=lambda: dict(vgg.DEFAULT_STYLE_LAYERS))
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 1.0
    tone_weight: float = 0.0
    tone_scale: int = 16

    def __post_init__(self):
        for name in ("content_layers", "style_layers"):
            layers = getattr(self, name)
            if not layers or any(w < 0 for w in layers.values()) or sum(layers.values()) <= 0:
                raise ValueError(
                    f"{name} must map layer names to non-negative weights, got {layers}"
                )
        for name in ("content_weight", "style_weight", "tv_weight", "tone_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if int(self.tone_scale) != self.tone_scale or self.tone_scale < 1:
            raise ValueError(f"tone_scale must be a positive integer, got {self.tone_scale}")

    @property
    def layers(self):
        """Every VGG layer read by either loss."""
        return sorted(set(self.content_layers) | set(self.style_layers))


def gram_matrix(features, in_feature_dtype=False):
    """(N, H, W, C) features -> (N, C, C) float32 Gram matrices, divided by H * W.

    A batched matmul of the (N, H * W, C) features with themselves: under
    TensorFlow on the CPU its forward and backward run 1.5x faster than the
    equivalent einsum (`bench/bench_train_ops.py`).

    Args:
        features: the feature maps.
        in_feature_dtype: multiply in the features' own dtype (bfloat16 from a
            bfloat16 VGG) instead of float32. oneDNN accumulates bfloat16
            products in float32 (on AMX tiles, 2.5x faster forward and
            backward than float32); the result is rounded to bfloat16 (8
            significant bits) before the float32 loss sums.
    """
    if not in_feature_dtype:
        features = ops.convert_to_tensor(features, "float32")
    shape = ops.shape(features)
    pixels = shape[1] * shape[2]
    flat = ops.reshape(features, (shape[0], pixels, features.shape[-1]))
    return _flat_gram(flat) / ops.cast(pixels, "float32")


@ops.custom_gradient
def _flat_gram(flat):
    """(N, P, C) -> float32 (N, C, C) `flat^T flat`, with a gradient that transposes nothing large.

    Autodiff of `matmul(transpose(flat), flat)` transposes the (N, P, C)
    tensor again; the gradient `flat (g + g^T)` needs only the small (C, C)
    transpose. Forward and backward of the Gram matrices of a training step
    took half the time (bfloat16, TensorFlow, CPU with AMX).
    """
    gram = ops.cast(ops.matmul(ops.transpose(flat, (0, 2, 1)), flat), "float32")

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        upstream = ops.cast(upstream, flat.dtype)
        return ops.matmul(flat, upstream + ops.transpose(upstream, (0, 2, 1)))

    return gram, grad


def relative_error(prediction, target):
    """Per-sample mean squared error divided by the target's mean square. -> (N,)"""
    axes = tuple(range(1, len(prediction.shape)))
    err = ops.mean(ops.square(prediction - target), axis=axes)
    return err / (ops.mean(ops.square(target), axis=axes) + _EPS)


def _weighted_mean(terms, weights):
    total = sum(weights.values())
    return sum(terms[name] * (w / total) for name, w in weights.items())


def as_float32(features, layers):
    """{name: float32 features} for `layers` of a feature dict (a cast where needed)."""
    return {name: ops.cast(features[name], "float32") for name in layers}


def content_loss(features, content_targets, layers):
    """Relative feature-reconstruction error, per sample. -> (N,)"""
    return _weighted_mean(
        {name: relative_error(features[name], content_targets[name]) for name in layers}, layers
    )


def style_loss(features, gram_targets, layers, in_feature_dtype=False):
    """Relative Gram-matrix error, per sample. `gram_targets` broadcast over the batch."""
    grams = {name: gram_matrix(features[name], in_feature_dtype) for name in layers}
    return _weighted_mean(
        {name: relative_error(grams[name], gram_targets[name]) for name in layers}, layers
    )


def total_variation(images):
    """Mean squared difference of neighbouring pixels, in (pixels / 255)^2, per sample."""
    images = ops.convert_to_tensor(images, "float32") / 255.0
    dy = ops.mean(ops.square(images[:, 1:, :, :] - images[:, :-1, :, :]), axis=(1, 2, 3))
    dx = ops.mean(ops.square(images[:, :, 1:, :] - images[:, :, :-1, :]), axis=(1, 2, 3))
    return dx + dy


def _gaussian_blur(images, size, sigma):
    """Separable Gaussian filter, "valid" padding, of (N, H, W, C) images."""
    offsets = np.arange(size, dtype="float32") - (size - 1) / 2
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    taps = taps / taps.sum()
    channels = images.shape[-1]
    rows = np.tile(taps.reshape(size, 1, 1, 1), (1, 1, channels, 1))
    cols = np.tile(taps.reshape(1, size, 1, 1), (1, 1, channels, 1))
    images = ops.depthwise_conv(images, ops.convert_to_tensor(rows), padding="valid")
    return ops.depthwise_conv(images, ops.convert_to_tensor(cols), padding="valid")


def ssim(images, references, max_val=255.0, size=11, sigma=1.5):
    """Per-sample SSIM of (N, H, W, C) images against references. -> (N,)

    Wang et al.'s structural similarity with the constants and the 11-tap,
    sigma 1.5 Gaussian window of `tf.image.ssim` (what the quality reports
    measure), written in `keras.ops` so that it can be a loss term under any
    backend: the mean over valid positions and channels of luminance times
    contrast-structure agreement. Images need at least `size` pixels a side.
    """
    x = ops.convert_to_tensor(images, "float32")
    y = ops.convert_to_tensor(references, "float32")
    c1 = (0.01 * max_val) ** 2
    c2 = (0.03 * max_val) ** 2
    mean_x = _gaussian_blur(x, size, sigma)
    mean_y = _gaussian_blur(y, size, sigma)
    mean_xy = 2.0 * mean_x * mean_y
    mean_sq = ops.square(mean_x) + ops.square(mean_y)
    luminance = (mean_xy + c1) / (mean_sq + c1)
    cross = 2.0 * _gaussian_blur(x * y, size, sigma)
    energy = _gaussian_blur(ops.square(x) + ops.square(y), size, sigma)
    structure = (cross - mean_xy + c2) / (energy - mean_sq + c2)
    return ops.mean(luminance * structure, axis=(1, 2, 3))


def tone_map(images, scale):
    """Local mean luminance of a [0, 255] RGB batch, in [0, 1]: (N, H / scale, W / scale, 1).

    The luma of each pixel averaged over `scale` x `scale` blocks (edge blocks
    over the pixels they hold): where the picture is light or dark, without
    its texture.
    """
    images = ops.convert_to_tensor(images, "float32")
    luma = ops.sum(images * ops.convert_to_tensor(_LUMA, "float32"), axis=-1, keepdims=True)
    scale = int(scale)
    return ops.average_pool(luma / 255.0, scale, strides=scale, padding="same")


class PerceptualLoss:
    """Content + style + TV loss on one frozen VGG feature extractor.

    Args:
        extractor: a `vgg.FeatureExtractor` exposing at least `config.layers`.
        config: a `LossConfig`.
        low_precision_grams: compute the Grams of the images' features in the
            extractor's dtype (`gram_matrix(..., in_feature_dtype=True)`). The
            fast-path trainer does, with a bfloat16 extractor; the slow
            method's L-BFGS keeps float32 Grams (its line search compares
            losses that differ by less than bfloat16's rounding).
    """

    def __init__(self, extractor, config=None, low_precision_grams=False):
        self.config = config or LossConfig()
        self.low_precision_grams = low_precision_grams
        missing = set(self.config.layers) - set(extractor.layers)
        if missing:
            raise ValueError(f"The feature extractor does not expose layers {sorted(missing)}")
        self.extractor = extractor

    def style_targets(self, style_images, blend_weights=None):
        """Gram targets for one style or a weighted blend of several.

        Args:
            style_images: a list of [0, 255] RGB images (H, W, 3), any sizes.
            blend_weights: one non-negative weight per image (normalised), or
                None for an even blend.

        Returns:
            {layer: (1, C, C) Gram matrix}.
        """
        if blend_weights is None:
            blend_weights = [1.0] * len(style_images)
        if len(blend_weights) != len(style_images):
            raise ValueError(
                f"Got {len(blend_weights)} style weights for {len(style_images)} style images"
            )
        if min(blend_weights) < 0 or sum(blend_weights) <= 0:
            raise ValueError(
                f"Style weights must be non-negative with a positive sum: {blend_weights}"
            )
        total = float(sum(blend_weights))
        targets = {name: 0.0 for name in self.config.style_layers}
        for image, weight in zip(style_images, blend_weights, strict=True):
            features = self.extractor(ops.convert_to_tensor(image, "float32")[None])
            for name in targets:
                targets[name] = targets[name] + gram_matrix(features[name]) * (weight / total)
        return targets

    def content_targets(self, content_images):
        """{layer: features} of a [0, 255] RGB batch for the content layers.

        With a tone term, also {`TONE_TARGET`: the photos' `tone_map`}.
        """
        targets = self.extractor(content_images, layers=self.config.content_layers)
        if self.config.tone_weight > 0:
            targets = {**targets, TONE_TARGET: tone_map(content_images, self.config.tone_scale)}
        return targets

    def parts(self, images, content_targets, style_targets):
        """Unweighted per-sample loss parts of a [0, 255] RGB batch: {name: (N,)}."""
        features = self.extractor(images, native_dtype=self.low_precision_grams)
        content = as_float32(features, self.config.content_layers)
        parts = {
            "content_loss": content_loss(content, content_targets, self.config.content_layers),
            "style_loss": style_loss(
                features, style_targets, self.config.style_layers, self.low_precision_grams
            ),
            "tv_loss": total_variation(images),
        }
        if self.config.tone_weight > 0:
            tones = tone_map(images, self.config.tone_scale)
            parts["tone_loss"] = relative_error(tones, content_targets[TONE_TARGET])
        return parts

    def __call__(self, images, content_targets, style_targets):
        """Returns (total, parts): the weighted scalar total and the mean of each part."""
        parts = {
            k: ops.mean(v) for k, v in self.parts(images, content_targets, style_targets).items()
        }
        c = self.config
        total = (
            c.content_weight * parts["content_loss"]
            + c.style_weight * parts["style_loss"]
            + c.tv_weight * parts["tv_loss"]
        )
        if "tone_loss" in parts:
            total = total + c.tone_weight * parts["tone_loss"]
        return total, parts
