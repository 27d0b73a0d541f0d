"""Tiled loss and gradient of the slow path: memory bounded by a tile, not by the image.

The untiled step (`backend.compile_value_and_grad`) runs VGG forward and
backward on the whole image, so its memory grows with the pixel count (12 GiB
at 2048 px). Every term of `losses.PerceptualLoss` is a sum over feature
positions, or a function of such sums (the Gram matrices), so it can be
computed tile by tile:

* The image is cut into a grid of tiles whose *interiors* partition it. Each
  tile is read with a halo around its interior, at least as wide as the
  receptive-field margin of the deepest layer used, and clipped at the image
  border (a border tile then sees exactly the zero padding that the whole
  image sees). Tile origins are multiples of that layer's stride, so the
  pooling grids coincide. An interior feature of a tile then equals the
  whole image's feature at that position: the tiling is exact, up to
  floating-point summation order. Only interior positions are counted (at a
  layer of stride s, position p covers the pixels [p * s, (p + 1) * s)).
* Pass 1 (forward only, per tile): Gram sums over interior positions for the
  style layers and squared-error sums for the content layers. They give the
  exact loss, and dL/dG for each (small, C x C) Gram matrix.
* Pass 2 (forward and backward, per tile): the gradient, w.r.t. the tile's
  pixels, of the surrogate `sum <dL/dG, G_tile> + content error of the tile`
  with dL/dG held fixed; it equals the tile's share of the full gradient.
  The shares are added into the full-image gradient.
* Total variation is cheap and is computed on the whole image (NumPy).

The price is a second VGG forward pass per evaluation and the halo's extra
pixels: roughly 1.5-2x the compute of one untiled step at a large level.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_style.core import backend, losses

#: Layer types that change the spatial geometry (any other layer must be pointwise).
_CONV_TYPES = (keras.layers.Conv2D,)
_POOL_TYPES = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)


def _ceil_div(a, b):
    return -(-a // b)


def _round_up(value, multiple):
    return _ceil_div(value, multiple) * multiple


def layer_geometry(model, names):
    """Stride and receptive-field margin of some layers of a conv/pool chain.

    The receptive field of feature position p of a layer of stride s spans
    the pixels [p * s - margin, p * s + s - 1 + margin] (VGG's 3x3 "same"
    convolutions and 2x2 pools give a symmetric margin: 58 px at
    block5_conv1 of VGG16, 70 px for VGG19).

    Args:
        model: a Keras model whose layers are a chain of stride-1 "same"
            convolutions, "valid" poolings and pointwise layers (the
            `vgg.FeatureExtractor` model).
        names: the layers to report.

    Returns:
        {name: (stride, margin)} in pixels.
    """
    stride, low, high = 1, 0, 0
    geometry = {}
    for layer in model.layers:
        if isinstance(layer, _CONV_TYPES):
            if max(layer.strides) != 1 or layer.padding != "same":
                raise ValueError(f"Tiling needs stride-1 'same' convolutions; {layer.name} is not")
            reach = max(
                (k - 1) // 2 * d
                for k, d in zip(layer.kernel_size, layer.dilation_rate, strict=True)
            )
            low, high = low - reach * stride, high + reach * stride
        elif isinstance(layer, _POOL_TYPES):
            if layer.padding != "valid":
                raise ValueError(f"Tiling needs 'valid' pooling; {layer.name} is not")
            high += (max(layer.pool_size) - 1) * stride
            stride *= max(layer.strides)
        if layer.name in names:
            geometry[layer.name] = (stride, max(-low, high - stride + 1))
    missing = set(names) - set(geometry)
    if missing:
        raise ValueError(f"Layers {sorted(missing)} are not in the model")
    return geometry


def split_axis(length, tile_size, halo, align):
    """Cuts one image axis into tiles whose windows are about `tile_size` long at most.

    An axis no longer than `tile_size` is one tile. Otherwise the interiors
    have one length (a multiple of `align`, at most `tile_size - 2 * halo`
    but at least `align`), except the last, and as few tiles as that allows.
    Windows are the interiors grown by `halo` and clipped to the axis; a
    window that would reach past the axis end is shifted back instead, so all
    windows have one length, except the one that ends at the border (less
    than `align` longer). Tiles with equal windows are merged.

    Bounding the *window* (what VGG sees) rather than the interior bounds the
    memory: a tiled level needs about what an untiled `tile_size` level needs
    (TensorFlow's CPU allocator keeps its high-water mark, so a window larger
    than the previous, untiled pyramid level would add to the peak).

    Args:
        length: axis length in pixels.
        tile_size: longest window (unless `2 * halo + align` is longer).
        halo: context on each side of an interior, a multiple of `align`.
        align: every window and interior starts at a multiple of this.

    Returns:
        list of (start, end, interior_start, interior_end).
    """
    if length <= tile_size:
        return [(0, length, 0, length)]
    max_step = max(align, (tile_size - 2 * halo) // align * align)
    step = _round_up(_ceil_div(length, _ceil_div(length, max_step)), align)
    span = step + 2 * halo
    last_start = max(0, (length - span) // align * align)
    spans = []
    for i0 in range(0, length, step):
        i1, start = min(i0 + step, length), max(i0 - halo, 0)
        # The window that ends at the border serves every interior it covers with a halo.
        window = (last_start, length) if start >= last_start else (start, start + span)
        if spans and spans[-1][:2] == window:
            spans[-1] = (*window, spans[-1][2], i1)
        else:
            spans.append((*window, i0, i1))
    return spans


def split_image(height, width, tile_size, halo, align):
    """Tiles of an image: list of ((y0, y1, x0, x1) window, (y0, y1, x0, x1) interior)."""
    return [
        ((r[0], r[1], c[0], c[1]), (r[2], r[3], c[2], c[3]))
        for r in split_axis(height, tile_size, halo, align)
        for c in split_axis(width, tile_size, halo, align)
    ]


def _interior_mask(features, stride, box):
    """(1, h, w, 1) float mask of the positions whose stride cell starts inside `box`.

    Args:
        features: (N, h, w, C) features of a tile.
        stride: the layer's stride in pixels.
        box: int32 (y0, y1, x0, x1) interior of the tile, in tile pixels.
    """
    shape = ops.shape(features)
    rows = ops.arange(shape[1], dtype="int32") * stride
    cols = ops.arange(shape[2], dtype="int32") * stride
    in_rows = ops.cast(ops.logical_and(rows >= box[0], rows < box[1]), "float32")
    in_cols = ops.cast(ops.logical_and(cols >= box[2], cols < box[3]), "float32")
    return (in_rows[:, None] * in_cols[None, :])[None, :, :, None]


def tv_loss_and_grad(images):
    """Per-sample `losses.total_variation` of a NumPy batch and its summed gradient.

    Returns:
        ((N,) float64 losses, (N, H, W, 3) float64 gradient of their sum).
    """
    x = np.asarray(images, np.float64) / 255.0
    loss, grad = np.zeros(x.shape[0]), np.zeros_like(x)
    for axis in (1, 2):
        diff = np.diff(x, axis=axis)
        count = diff[0].size
        loss += np.sum(np.square(diff), axis=(1, 2, 3)) / count
        share = 2.0 * diff / count / 255.0
        head = [slice(None)] * 4
        tail = [slice(None)] * 4
        head[axis], tail[axis] = slice(1, None), slice(None, -1)
        grad[tuple(head)] += share
        grad[tuple(tail)] -= share
    return loss, grad


class TiledLoss:
    """`PerceptualLoss` and its gradient computed tile by tile (see the module docstring).

    Args:
        loss: a `losses.PerceptualLoss`.
        variables: the Keras variables of its extractor (`extractor.model.variables`).
        tile_size: longest side of a tile's window (interior plus halo) in
            pixels, see `split_axis`; an axis no longer than this is not cut.
        halo: context around each interior in pixels, rounded up to the
            deepest layer's stride. None (default): the receptive-field
            margin of the deepest layer (VGG16 to block5_conv1: 64 px, VGG19:
            80 px), which makes the tiling exact. Smaller halos save compute
            at the price of border effects.
    """

    def __init__(self, loss, variables, tile_size=1024, halo=None):
        config = loss.config
        if config.tone_weight > 0:
            raise ValueError("The tiled loss has no tone term: use tone_weight=0 or tile_size=None")
        geometry = layer_geometry(loss.extractor.model, config.layers)
        self.loss, self.tile_size = loss, int(tile_size)
        self.strides = {name: stride for name, (stride, _) in geometry.items()}
        self.align = math.lcm(*self.strides.values())
        margin = max(m for _, m in geometry.values()) if halo is None else int(halo)
        self.halo = _round_up(margin, self.align)
        self.content_weights = _normalised(config.content_layers)
        self.style_weights = _normalised(config.style_layers)
        self._features = backend.compile_forward(self._tile_features, variables)
        self._grams = backend.compile_forward(self._tile_grams, variables)
        self._sums = backend.compile_forward(self._tile_sums, variables)
        self._grad = backend.compile_value_and_grad(self._surrogate, variables)

    def tiles(self, height, width):
        """The tiles of a (height, width) image: [(window, interior)], see `split_image`."""
        return split_image(height, width, self.tile_size, self.halo, self.align)

    # Compiled per-tile functions (one trace per tile shape).

    def _tile_features(self, x):
        features = self.loss.extractor(x)
        return {name: ops.cast(features[name], "float32") for name in self.content_weights}

    def _grams_of(self, features, box):
        sums = {}
        for name in self.style_weights:
            f = ops.cast(features[name], "float32")
            masked = f * _interior_mask(f, self.strides[name], box)
            sums[name] = ops.einsum("nhwc,nhwd->ncd", masked, f)
        return sums

    def _errors_of(self, features, box, targets):
        errors = {}
        for name in self.content_weights:
            f = ops.cast(features[name], "float32")
            mask = _interior_mask(f, self.strides[name], box)
            errors[name] = ops.sum(mask * ops.square(f - targets[name]), axis=(1, 2, 3))
        return errors

    def _tile_grams(self, x, box):
        return self._grams_of(self.loss.extractor(x), box)

    def _tile_sums(self, x, box, targets):
        features = self.loss.extractor(x)
        return self._grams_of(features, box), self._errors_of(features, box, targets)

    def _surrogate(self, x, box, targets, gram_weights, error_weights):
        grams, errors = self._tile_sums(x, box, targets)
        total = sum(ops.sum(gram_weights[name] * grams[name]) for name in grams)
        total = total + sum(ops.sum(error_weights[name] * errors[name]) for name in errors)
        return total, {}

    # Targets.

    def content_targets(self, images):
        """{content layer: (N, h, w, C) float32 NumPy features} of a [0, 255] RGB batch."""
        images = np.asarray(ops.convert_to_numpy(images), np.float32)
        n, height, width, _ = images.shape
        out = {}
        for window, interior in self.tiles(height, width):
            features = self._features(_tensor(_crop(images, window)))
            for name, f in features.items():
                f, s = ops.convert_to_numpy(f), self.strides[name]
                if name not in out:
                    out[name] = np.zeros((n, height // s, width // s, f.shape[-1]), np.float32)
                local, full = _interior_slices(window, interior, s)
                out[name][full] = f[local]
        return out

    def _gram(self, image):
        """{style layer: (1, C, C) float64 Gram matrix} of one [0, 255] RGB (H, W, 3) image."""
        image = np.asarray(ops.convert_to_numpy(image), np.float32)[None]
        sums = {name: 0.0 for name in self.style_weights}
        for window, interior in self.tiles(*image.shape[1:3]):
            grams = self._grams(_tensor(_crop(image, window)), _box(window, interior))
            for name in sums:
                sums[name] = sums[name] + ops.convert_to_numpy(grams[name]).astype(np.float64)
        return {name: g / _positions(image.shape, self.strides[name]) for name, g in sums.items()}

    def style_targets(self, style_images, blend_weights=None):
        """Gram targets of one style or a blend, as `PerceptualLoss.style_targets`, tiled.

        Returns:
            {style layer: (1, C, C) float32 NumPy Gram matrix}.
        """
        weights = [1.0] * len(style_images) if blend_weights is None else list(blend_weights)
        if len(weights) != len(style_images) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(
                f"Need one non-negative style weight per style image with a positive sum; "
                f"got {weights} for {len(style_images)} images"
            )
        targets = {name: 0.0 for name in self.style_weights}
        for image, weight in zip(style_images, weights, strict=True):
            grams = self._gram(image)
            for name in targets:
                targets[name] = targets[name] + grams[name] * (weight / sum(weights))
        return {name: np.asarray(t, np.float32) for name, t in targets.items()}

    # The step.

    def step(self, x, content_targets, style_targets):
        """Loss and gradient of a batch, with the contract of `GatysStylizer.step`.

        Args:
            x: (N, H, W, 3) [0, 255] RGB batch (tensor or NumPy).
            content_targets: from `content_targets` (same N, H, W).
            style_targets: from `style_targets` (or `PerceptualLoss.style_targets`).

        Returns:
            (total, parts, grad): the summed (N x mean) weighted loss, the
            mean unweighted parts plus "loss" (the mean weighted loss), and
            the gradient of `total` w.r.t. `x`; float32 backend tensors.
        """
        x = np.asarray(ops.convert_to_numpy(x), np.float32)
        content_targets = {k: np.asarray(v, np.float32) for k, v in content_targets.items()}
        style_targets = {k: np.asarray(ops.convert_to_numpy(v)) for k, v in style_targets.items()}
        tiles = self.tiles(*x.shape[1:3])
        grams, errors = self._forward_sums(x, tiles, content_targets)
        parts, gram_weights, error_weights = self._loss_and_weights(
            x.shape, grams, errors, content_targets, style_targets
        )
        tv, tv_grad = tv_loss_and_grad(x)
        config = self.loss.config
        parts["tv_loss"] = tv.mean()
        mean = {k: float(np.mean(v)) for k, v in parts.items()}
        loss = (
            config.content_weight * mean["content_loss"]
            + config.style_weight * mean["style_loss"]
            + config.tv_weight * mean["tv_loss"]
        )
        grad = self._backward(x, tiles, content_targets, gram_weights, error_weights)
        grad += config.tv_weight * tv_grad
        mean["loss"] = loss
        parts = {k: _tensor(np.float32(v)) for k, v in mean.items()}
        return _tensor(np.float32(loss * x.shape[0])), parts, _tensor(grad.astype(np.float32))

    def _forward_sums(self, x, tiles, content_targets):
        """Pass 1: interior Gram sums and content error sums over all tiles (float64)."""
        grams = {name: 0.0 for name in self.style_weights}
        errors = {name: 0.0 for name in self.content_weights}
        for window, interior in tiles:
            g, e = self._sums(*self._tile_args(x, window, interior, content_targets))
            for name in grams:
                grams[name] = grams[name] + ops.convert_to_numpy(g[name]).astype(np.float64)
            for name in errors:
                errors[name] = errors[name] + ops.convert_to_numpy(e[name]).astype(np.float64)
        return grams, errors

    def _loss_and_weights(self, shape, grams, errors, content_targets, style_targets):
        """Per-sample content and style losses, and the surrogate's weights of pass 2.

        Returns:
            (parts, gram_weights, error_weights): {"content_loss", "style_loss":
            (N,)}, {style layer: (N, C, C) d(weighted sum of losses)/d(Gram
            sum)}, {content layer: (N,) d(...)/d(error sum)}.
        """
        config = self.loss.config
        style, gram_weights = 0.0, {}
        for name, weight in self.style_weights.items():
            count = _positions(shape, self.strides[name])
            gram, target = grams[name] / count, style_targets[name].astype(np.float64)
            energy = np.mean(np.square(target), axis=(1, 2)) + losses._EPS
            style = style + weight * np.mean(np.square(gram - target), axis=(1, 2)) / energy
            d_gram = weight * 2.0 * (gram - target) / target[0].size / energy[:, None, None]
            gram_weights[name] = (config.style_weight * d_gram / count).astype(np.float32)
        content, error_weights = 0.0, {}
        for name, weight in self.content_weights.items():
            target = content_targets[name]
            size = target[0].size
            energy = np.mean(np.square(target, dtype=np.float64), axis=(1, 2, 3)) + losses._EPS
            content = content + weight * errors[name] / size / energy
            error_weights[name] = (config.content_weight * weight / size / energy).astype(
                np.float32
            )
        return {"content_loss": content, "style_loss": style}, gram_weights, error_weights

    def _backward(self, x, tiles, content_targets, gram_weights, error_weights):
        """Pass 2: the gradient of the content and style terms, tile by tile."""
        grad = np.zeros(x.shape, np.float64)
        weights = (
            {k: _tensor(v) for k, v in gram_weights.items()},
            {k: _tensor(v) for k, v in error_weights.items()},
        )
        for window, interior in tiles:
            args = self._tile_args(x, window, interior, content_targets)
            _, _, tile_grad = self._grad(*args, *weights)
            grad[_window_slices(window)] += ops.convert_to_numpy(tile_grad)
        return grad

    def _tile_args(self, x, window, interior, content_targets):
        y0, y1, x0, x1 = window
        targets = {}
        for name, target in content_targets.items():
            s = self.strides[name]
            targets[name] = _tensor(target[:, y0 // s : y1 // s, x0 // s : x1 // s])
        return _tensor(_crop(x, window)), _box(window, interior), targets


def _normalised(layer_weights):
    total = float(sum(layer_weights.values()))
    return {name: w / total for name, w in layer_weights.items()}


def _positions(shape, stride):
    """Feature positions of an (N, H, W, C) image at a layer of this stride."""
    return (shape[1] // stride) * (shape[2] // stride)


def _tensor(array):
    return ops.convert_to_tensor(np.ascontiguousarray(array) if np.ndim(array) else array)


def _window_slices(window):
    y0, y1, x0, x1 = window
    return slice(None), slice(y0, y1), slice(x0, x1)


def _crop(images, window):
    return images[_window_slices(window)]


def _box(window, interior):
    """The interior in the window's pixel coordinates, as an int32 tensor (y0, y1, x0, x1)."""
    y0, _, x0, _ = window
    iy0, iy1, ix0, ix1 = interior
    return ops.convert_to_tensor(np.array([iy0 - y0, iy1 - y0, ix0 - x0, ix1 - x0], np.int32))


def _interior_slices(window, interior, stride):
    """(tile-local, full-image) index tuples of the interior's feature positions."""
    y0, _, x0, _ = window
    iy0, iy1, ix0, ix1 = interior
    local = (
        slice(None),
        slice((iy0 - y0) // stride, _ceil_div(iy1 - y0, stride)),
        slice((ix0 - x0) // stride, _ceil_div(ix1 - x0, stride)),
    )
    full = (
        slice(None),
        slice(iy0 // stride, _ceil_div(iy1, stride)),
        slice(ix0 // stride, _ceil_div(ix1, stride)),
    )
    return local, full
