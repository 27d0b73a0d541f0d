"""The exported graph: a copy of the network written in ops the XNNPACK delegate runs in full.

LiteRT runs a .tflite model on CPUs through the XNNPACK delegate, which
takes the operators it supports and leaves the rest to the interpreter's
reference kernels; every switch between the two splits the graph into one
more delegate partition. The trained `TransformerNet`, converted as it is,
gives 17 partitions in float32 (36 in int8): XNNPACK has no MIRROR_PAD, no
RESIZE_NEAREST_NEIGHBOR with a computed size and none of the shape arithmetic
(SHAPE, PACK, FLOOR_DIV, STRIDED_SLICE with computed ends) of the dynamic-size
model. `xnnpack_copy` clones the network with the same weights and the same
function, rewritten into operators it does take:

- reflection padding (and the static pad to a multiple of 4) as slices and
  concatenations of at most 4 inputs (XNNPACK declines larger ones);
- nearest x2 upsampling, 1-pixel reflection padding and a 3x3 convolution as
  four 2x2 convolutions at the low resolution, interleaved with
  DEPTH_TO_SPACE (`fast_graph.subpixel_kernels`: 2.25 times fewer
  multiply-adds; reflection padding of the upsampled image is edge padding of
  the low-resolution one);
- the 9x9 convolution to RGB per 2x2 output block (a stride-2 10x10
  convolution to 12 channels, then DEPTH_TO_SPACE): 3 output channels leave
  most of a CPU's vector lanes empty;
- instance norm as `d * (gamma * rsqrt(var + eps)) + beta`, the scale
  computed on the `[1, 1, 1, C]` statistics (one full-size pass fewer);
- no shape arithmetic in the dynamic-size model: it takes heights and widths
  that are multiples of 4 (the network's own padding target), so the pad to
  a multiple of 4 and the final crop disappear; callers pad other sizes
  (`export_verify.TFLiteRunner` does, by reflection, as the Keras model does).

In float32 the copy computes the network's function up to summation order
(about 1e-4 on the [0, 255] scale). The Keras model, its weights and the
SavedModel are untouched: only the TFLite converter sees this copy.
"""

import keras
import numpy as np
from keras import ops

from keras_style.core import layers as ks_layers
from keras_style.core import padding, subpixel
from keras_style.export import norm as export_norm
from keras_style.fast import graph as fast_graph

#: Height and width of the dynamic-size exported model must be multiples of this.
SIZE_MULTIPLE = 4
#: Name scope of the ops a full-integer model keeps in float (inside the XNNPACK partition).
FLOAT_SCOPE = "xnn_float"
#: Most inputs of one CONCATENATION that XNNPACK takes (it leaves 9-input ones outside).
MAX_CONCAT = 4


def reflect_pad(x, before, after, axis):
    """Reflection padding along one axis as slices and concatenations of <= `MAX_CONCAT` inputs."""
    return padding.reflect_pad(x, before, after, axis, MAX_CONCAT)


def edge_pad(x, amount=1):
    """Edge padding of height and width as slices and concatenations of <= `MAX_CONCAT` inputs."""
    return padding.edge_pad(x, amount, MAX_CONCAT)


class SliceReflectionPadding2D(keras.layers.Layer):
    """Reflection padding of height and width by (top, bottom, left, right) pixels, as slices.

    Replaces `ReflectionPadding2D` (and the static `PadToMultiple`) in the
    exported graph: the converter turns `ops.pad(mode="reflect")` into
    MIRROR_PAD, which XNNPACK does not run.
    """

    def __init__(self, pads, **kwargs):
        super().__init__(**kwargs)
        self.pads = tuple(int(p) for p in pads)

    def call(self, x):
        top, bottom, left, right = self.pads
        return reflect_pad(reflect_pad(x, top, bottom, 1), left, right, 2)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        top, bottom, left, right = self.pads
        return (
            n,
            None if h is None else h + top + bottom,
            None if w is None else w + left + right,
            c,
        )

    def get_config(self):
        return {**super().get_config(), "pads": self.pads}


class StaticPadToMultiple(ks_layers.PadToMultiple):
    """`PadToMultiple` with slices for a static size; nothing for a dynamic one.

    A dynamic-size exported model requires sides that are multiples of
    `multiple` already (see `SIZE_MULTIPLE`), so it needs no padding and no
    shape arithmetic.
    """

    def call(self, inputs):
        h, w = inputs.shape[1], inputs.shape[2]
        if h is None or w is None:
            return inputs
        m = self.multiple
        return reflect_pad(reflect_pad(inputs, 0, -h % m, 1), 0, -w % m, 2)

    def compute_output_shape(self, input_shape):
        if input_shape[1] is None or input_shape[2] is None:
            return input_shape
        return super().compute_output_shape(input_shape)


class StaticCropToReference(ks_layers.CropToReference):
    """`CropToReference` for a static size; the identity for a dynamic one (no crop needed)."""

    def call(self, inputs):
        x, reference = inputs
        h, w = reference.shape[1], reference.shape[2]
        if h is None or w is None or x.shape[1:3] == (h, w):
            return x
        return x[:, :h, :w, :]

    def compute_output_shape(self, input_shape):
        x_shape, ref_shape = input_shape
        if ref_shape[1] is None or ref_shape[2] is None:
            return x_shape
        return super().compute_output_shape(input_shape)


class DepthToSpaceUpsampling2D(ks_layers.NearestUpsampling2D):
    """Nearest-neighbour upsampling as a channel concatenation and DEPTH_TO_SPACE.

    Every output pixel of a `factor` x `factor` block reads the same input
    pixel; no output size is computed, so a dynamic-size model needs no
    shape arithmetic (XNNPACK takes RESIZE_NEAREST_NEIGHBOR only with a
    constant size).
    """

    def call(self, inputs):
        if self.factor == 1:
            return inputs
        copies = ops.concatenate([inputs] * (self.factor * self.factor), axis=-1)
        return subpixel.depth_to_space(copies, self.factor)


class XnnInstanceNormalization(export_norm.ChannelEpsilonNormalization):
    """Instance norm as `d * (gamma * rsqrt(var + eps)) + beta`: one full-size pass fewer.

    The scale is computed on the `[1, 1, 1, C]` statistics, under the
    `FLOAT_SCOPE` name scope: a full-integer model keeps those few values in
    float (XNNPACK has no int8 RSQRT, and int8 `var + eps` loses the small
    variances). With `float_offset`, the `+ beta` is in that scope too (int8
    models: XNNPACK declines an int8 ADD of a near-zero constant, which the
    norms before a residual sum have). With `channel_epsilon`, the epsilon is
    a per-channel weight (`export_norm.ChannelEpsilonNormalization`, the form
    `export_rewrite`'s channel equalization produces).
    """

    def __init__(self, channel_epsilon=False, float_offset=False, **kwargs):
        super().__init__(channel_epsilon=channel_epsilon, **kwargs)
        self.float_offset = bool(float_offset)

    def call(self, inputs):
        d, var = self.centred_variance(inputs)
        with keras.name_scope(FLOAT_SCOPE):
            scale = ops.rsqrt(var + self.variance_epsilon())
            if self.gamma is not None:
                scale = scale * self.gamma
        y = d * scale
        if self.beta is None:
            return y
        if self.float_offset:
            with keras.name_scope(FLOAT_SCOPE):
                return y + self.beta
        return y + self.beta

    def get_config(self):
        return {**super().get_config(), "float_offset": self.float_offset}


class XnnSubpixelUpConv2D(keras.layers.Layer):
    """Nearest x2 upsampling, 1-pixel reflection padding and a 3x3 conv as four 2x2 convs.

    `fast_graph.SubpixelUpConv2D` in ops XNNPACK takes: edge padding as
    slices, each phase a 'valid' 2x2 convolution of a constant slice of the
    padded input (with the bias), interleaved by concatenation and
    DEPTH_TO_SPACE.
    """

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters

    def build(self, input_shape):
        c_in = input_shape[-1]
        self.kernel = self.add_weight(name="kernel", shape=(4, 2, 2, c_in, self.filters))
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, x):
        padded = edge_pad(x)
        phases = []
        for a in (0, 1):
            rows = padded[:, 1:] if a else padded[:, :-1]
            for b in (0, 1):
                window = rows[:, :, 1:] if b else rows[:, :, :-1]
                phases.append(ops.conv(window, self.kernel[2 * a + b]) + self.bias)
        return subpixel.depth_to_space(ops.concatenate(phases, axis=-1), 2)

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        return (n, None if h is None else 2 * h, None if w is None else 2 * w, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}

    @classmethod
    def from_conv(cls, conv):
        """The layer replacing `conv` (named like it), with its weights."""
        kernel, bias = fast_graph._kernel_and_bias(conv)
        layer = cls(conv.filters, name=conv.name, dtype="float32")
        layer.build((None, None, None, kernel.shape[2]))
        layer.set_weights([fast_graph.subpixel_kernels(kernel), bias])
        return layer


def strided_block_kernel(kernel, block=2):
    """The kernel of a K x K stride-1 convolution computed for `block` x `block` output blocks.

    One stride-`block` convolution with a (K + block - 1)-sided kernel and
    `block**2` times the output channels, ordered (row, column, channel) as
    DEPTH_TO_SPACE reads them: output channel (a, b, c) at block (i, j) is
    output pixel (block*i + a, block*j + b), channel c, of the original.

    Args:
        kernel: (K, K, C_in, C_out) array.
        block: output block side.

    Returns:
        (K + block - 1, K + block - 1, C_in, block**2 * C_out) array.
    """
    size, _, c_in, c_out = kernel.shape
    side = size + block - 1
    big = np.zeros((side, side, c_in, block, block, c_out), np.float32)
    for a in range(block):
        for b in range(block):
            big[a : a + size, b : b + size, :, a, b, :] = kernel
    return big.reshape(side, side, c_in, block * block * c_out)


class XnnBlockConv2D(keras.layers.Layer):
    """A stride-1 'valid' K x K convolution with few outputs, computed per 2x2 output block.

    One stride-2 convolution (`strided_block_kernel`) to 4x the output
    channels; its output stays blocked (`DepthToSpace` unblocks it). 3
    output channels leave most of a CPU's vector lanes idle, 12 fill them,
    for 1.23x the multiply-adds of a 9x9 kernel. Needs an even output size
    (the padded head of a multiple-of-4 image), and no shape arithmetic
    (SPACE_TO_DEPTH, the other way to write it, is left outside by XNNPACK
    in dynamic-size models).
    """

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = filters, kernel_size

    def build(self, input_shape):
        side = self.kernel_size + 1
        shape = (side, side, input_shape[-1], 4 * self.filters)
        self.kernel = self.add_weight(name="kernel", shape=shape)
        self.bias = self.add_weight(name="bias", shape=(4 * self.filters,), initializer="zeros")

    def call(self, x):
        return ops.conv(x, self.kernel, strides=2) + self.bias

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        grow = self.kernel_size - 1
        h = None if h is None else (h - grow) // 2
        w = None if w is None else (w - grow) // 2
        return (n, h, w, 4 * self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}

    @classmethod
    def from_conv(cls, conv):
        """The layer replacing `conv` (named like it), with its weights."""
        kernel, bias = fast_graph._kernel_and_bias(conv)
        layer = cls(conv.filters, conv.kernel_size[0], name=conv.name, dtype="float32")
        layer.build((None, None, None, kernel.shape[2]))
        layer.set_weights([strided_block_kernel(kernel), np.tile(bias, 4)])
        return layer


def _linear(conv):
    return conv.get_config()["activation"] in ("linear", None)


def _consumers(layer):
    return [node.operation for node in layer._outbound_nodes]


def _feeds_relu(layer):
    consumers = _consumers(layer)
    return bool(consumers) and all(isinstance(c, keras.layers.ReLU) for c in consumers)


#: Layers that act on each value alone, so they run unchanged on 2x2-blocked tensors.
_ELEMENTWISE = (keras.layers.Rescaling, keras.layers.Activation, ks_layers.StraightThroughClip)


class DepthToSpace(keras.layers.Layer):
    """DEPTH_TO_SPACE with block 2: undoes the blocked output of `XnnBlockConv2D`."""

    def call(self, x):
        return subpixel.depth_to_space(x, 2)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if h is None else 2 * h, None if w is None else 2 * w, c // 4)


class _Rewriter:
    """`clone_model` callbacks that swap each layer for its XNNPACK form (see the module doc).

    The output of a per-block convolution stays blocked through the
    elementwise layers after it (scaling, tanh, clip) and is unblocked by the
    next other layer: the network's last op is then DEPTH_TO_SPACE, which an
    int8 model runs in int8 inside XNNPACK (an int8 clip there would not be).
    """

    def __init__(self, subpixel=True, space_to_depth=True):
        self.subpixel, self.space_to_depth = subpixel, space_to_depth
        self.original = {}  # id(copy) -> original layer
        self.upsampled = {}  # id(upsampled tensor) -> its low-resolution input
        self.padded = {}  # id(padded upsampled tensor) -> the low-resolution input
        self.blocked = set()  # ids of tensors in 2x2-blocked form

    def clone(self, layer):
        config = {**layer.get_config()}
        if "dtype" in config:
            config["dtype"] = "float32"
        copy = self._replacement(layer, config)
        self.original[id(copy)] = layer
        return copy

    @staticmethod
    def _replacement(layer, config):
        if isinstance(layer, ks_layers.ReflectionPadding2D):
            p = layer.padding
            return SliceReflectionPadding2D((p, p, p, p), name=layer.name)
        if isinstance(layer, ks_layers.InstanceNormalization):
            config["channel_epsilon"] = export_norm.has_channel_epsilon(layer)
            return XnnInstanceNormalization(float_offset=not _feeds_relu(layer), **config)
        replacements = {
            ks_layers.PadToMultiple: StaticPadToMultiple,
            ks_layers.CropToReference: StaticCropToReference,
            ks_layers.NearestUpsampling2D: DepthToSpaceUpsampling2D,
        }
        return replacements.get(type(layer), layer.__class__).from_config(config)

    def call(self, copy, *args, **kwargs):
        layer = self.original[id(copy)]
        blocked = [a for a in args if id(a) in self.blocked]
        if blocked and len(args) == 1 and isinstance(layer, _ELEMENTWISE):
            out = copy(*args, **kwargs)
            self.blocked.add(id(out))
            return out
        args = [self._unblock(a, layer) if id(a) in self.blocked else a for a in args]
        args = [
            [self._unblock(t, layer) if id(t) in self.blocked else t for t in a]
            if isinstance(a, (list, tuple))
            else a
            for a in args
        ]
        x = args[0] if args else None
        out = None
        if len(args) == 1 and not kwargs and isinstance(layer, keras.layers.Conv2D):
            out = self._conv(layer, x)
        if out is None:
            out = copy(*args, **kwargs)
        if isinstance(layer, ks_layers.NearestUpsampling2D) and layer.factor == 2:
            self.upsampled[id(out)] = x
        if isinstance(layer, ks_layers.ReflectionPadding2D) and layer.padding == 1:
            if id(x) in self.upsampled:
                self.padded[id(out)] = self.upsampled[id(x)]
        return out

    @staticmethod
    def _unblock(x, layer):
        return DepthToSpace(name=f"{layer.name}_unblock", dtype="float32")(x)

    def _conv(self, layer, x):
        plain = fast_graph._plain_conv(layer) and _linear(layer)
        if self.subpixel and plain and layer.kernel_size[0] == 3 and id(x) in self.padded:
            return XnnSubpixelUpConv2D.from_conv(layer)(self.padded[id(x)])
        odd = layer.kernel_size[0] % 2 == 1 and layer.kernel_size[0] > 1
        if self.space_to_depth and plain and odd and layer.filters < fast_graph._S2D_MAX_FILTERS:
            out = XnnBlockConv2D.from_conv(layer)(x)
            self.blocked.add(id(out))
            return out
        return None

    def copy_weights(self, clone):
        for copy in clone.layers:
            layer = self.original.get(id(copy))
            if layer is not None and layer.weights:
                copy.set_weights([np.asarray(w) for w in layer.get_weights()])


def xnnpack_copy(model, subpixel=True, space_to_depth=True):
    """A float32 copy of a Functional network whose converted graph XNNPACK runs in one piece.

    Args:
        model: a Functional `keras.Model` built from `keras_style.core.layers`
            (a `TransformerNet`, or its `export_rewrite` form).
        subpixel: rewrite upsample + pad + 3x3 conv chains as sub-pixel convolutions.
        space_to_depth: run convolutions with few output channels on 2x2 blocks.

    Returns:
        A new Functional `keras.Model`; its dynamic-size form needs heights and
        widths that are multiples of `SIZE_MULTIPLE`.

    Raises:
        ValueError: for a model that is not Functional.
    """
    if not fast_graph.is_functional(model):
        raise ValueError(f"xnnpack_copy needs a Functional keras.Model, got {type(model)}")
    rewriter = _Rewriter(subpixel, space_to_depth)
    clone = keras.models.clone_model(
        model, clone_function=rewriter.clone, call_function=rewriter.call
    )
    rewriter.copy_weights(clone)
    return clone
