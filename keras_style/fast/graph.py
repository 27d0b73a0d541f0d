"""Inference-only copies of a stylization network that run faster on CPUs.

`inference_copy(model, precision)` clones a Functional network (such as a
`TransformerNet`) with the same weights, rewriting layers into mathematically
identical but cheaper computations (in float32 the results differ from the
original only by the rounding of a different summation order: at most about
0.01 on the [0, 255] scale). Measured on a 2-core AVX-512 CPU at 512x512, the
three together cut the CPU time by a quarter:

- nearest x2 upsampling, 1-pixel reflection padding and a 3x3 convolution
  become four 2x2 convolutions at the low resolution, interleaved (sub-pixel
  convolution): an upsampled pixel's 3x3 window covers only 2x2 distinct
  input pixels, so 2.25 times fewer multiply-adds. Reflection padding of the
  upsampled image equals edge padding of the low-resolution one.
- a large stride-1 convolution with few output channels (the 9x9 convolution
  to RGB) runs on 2x2 pixel blocks (space-to-depth): 4x the output channels
  fill the CPU's vector lanes, for about 1.2x the multiply-adds. On a 2-core
  AVX-512 CPU this made that layer 2.8 times faster.
- instance norm of a single image runs as one fused batch-norm kernel
  (`FusedInstanceNormalization`): 2.5 to 7 times faster than its four
  separate passes.

With `precision="bfloat16"` the layers between the first and the last layer
with weights (in a `TransformerNet`: from the first instance norm to the 9x9
convolution to RGB) run in bfloat16: convolutions with bfloat16 weights
(oneDNN uses the CPU's AMX tiles; without them bfloat16 is slower than
float32), instance norms under the `mixed_bfloat16` policy with float32
statistics. The output end (tanh, scaling to [0, 255]) stays float32, and
the first convolution, on float32 pixels, runs as a `SplitBfloat16Conv2D`
(bfloat16 speed, float32 accuracy) with the input scaling folded into its
weights.

On a CPU with AMX the convolutions stop being the cost: at 512x512 a
width-1.0 network spent more time in MirrorPad, in the passes around the
sub-pixel convolutions and in the float32 first convolution than in all the
bfloat16 convolutions together. So, for every precision, reflection padding
runs as one gather (`GatherReflectionPadding2D`), and the pad to a multiple
of 4 only when needed (`CondPadToMultiple`); `bench/bench_keras_inference.py`
measured 110 -> 77 ms for that network in bfloat16 (docs/tflite_xnnpack.md),
at 55 to 59 dB PSNR from the float32 model on real photos.
"""

import keras
import numpy as np
from keras import ops

from keras_style.core import cloning, padding, subpixel
from keras_style.core import layers as ks_layers

#: Accepted compute precisions.
PRECISIONS = ("float32", "bfloat16")

#: Convolutions with fewer output channels than this run on 2x2 blocks.
_S2D_MAX_FILTERS = 8

#: Block side of the space-to-depth convolution.
_BLOCK = 2


def check_precision(precision):
    """Returns `precision` if it is one of `PRECISIONS`, else raises ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def _space_to_depth(x, block):
    """(N, H, W, C) -> (N, H/b, W/b, b*b*C), channels ordered (row, column, channel)."""
    n, h, w, c = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2], x.shape[-1]
    x = ops.reshape(x, (n, h // block, block, w // block, block, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (n, h // block, w // block, block * block * c))


def subpixel_kernels(kernel):
    """The four 2x2 phase kernels of `core.subpixel.phase_kernels` as one float32 array.

    Args:
        kernel: (3, 3, C_in, C_out) array.

    Returns:
        (4, 2, 2, C_in, C_out) array, phases ordered (0, 0), (0, 1), (1, 0), (1, 1).
    """
    phases = subpixel.phase_kernels(np.asarray(kernel, np.float32))
    return np.stack([ops.convert_to_numpy(k) for k in phases])


def space_to_depth_kernel(kernel, block=_BLOCK):
    """The kernel of a stride-1 'valid' convolution rewritten for `block` x `block` pixel blocks.

    Output pixel (block*i + a, block*j + b) reads input pixel
    (block*i + a + ky, block*j + b + kx): block (i + (a + ky) // block, ...)
    at in-block position ((a + ky) % block, ...).

    Args:
        kernel: (K, K, C_in, C_out) array.
        block: block side.

    Returns:
        (T, T, block^2 * C_in, block^2 * C_out) array with T = (K + block - 2) // block + 1.
    """
    size, _, c_in, c_out = kernel.shape
    taps = (size + block - 2) // block + 1
    big = np.zeros((taps, taps, block, block, c_in, block, block, c_out), np.float32)
    for a in range(block):
        for b in range(block):
            for ky in range(size):
                for kx in range(size):
                    r, c = a + ky, b + kx
                    big[r // block, c // block, r % block, c % block, :, a, b, :] = kernel[ky, kx]
    return big.reshape(taps, taps, block * block * c_in, block * block * c_out)


class SubpixelUpConv2D(keras.layers.Layer):
    """Nearest x2 upsampling, 1-pixel reflection padding and a 3x3 conv, at the low resolution.

    Computes the same function as that chain (see `subpixel_kernels`) on the
    edge-padded input and interleaves the four output phases. How depends on
    the compute dtype, by measurement on CPUs: in float32 four 2x2
    convolutions (2.25 times fewer multiply-adds than the chain); in
    bfloat16, where AMX makes convolutions cheap and memory passes dear, one
    3x3 convolution computing the four phases at once
    (`core.subpixel.phase_kernel_3x3`: no slices, the bias fused; 6 ms less at
    512x512 for a width-1.0 network). Inference only: the weights come from
    `from_conv`.

    Args:
        filters: output channels.
        activation: applied to the output (the replaced convolution's).
    """

    def __init__(self, filters, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        c_in = input_shape[-1]
        self.kernel = self.add_weight(name="kernel", shape=(3, 3, c_in, 4 * self.filters))
        self.bias = self.add_weight(name="bias", shape=(4 * self.filters,), initializer="zeros")

    def call(self, x):
        padded = padding.gather_pad_2d(x, 1, 1, 1, 1, mode="edge")
        if self.compute_dtype == "float32":
            f, phases = self.filters, []
            for a in (0, 1):
                rows = padded[:, 1:] if a else padded[:, :-1]
                for b in (0, 1):
                    window = rows[:, :, 1:] if b else rows[:, :, :-1]
                    i = 2 * a + b
                    kernel = self.kernel[a : a + 2, b : b + 2, :, i * f : (i + 1) * f]
                    phases.append(ops.conv(window, kernel) + self.bias[:f])
            y = ops.concatenate(phases, axis=-1)
        else:
            y = ops.conv(padded, self.kernel) + self.bias
        return self.activation(subpixel.depth_to_space(y, 2))

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        return (n, None if h is None else 2 * h, None if w is None else 2 * w, self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "activation": keras.activations.serialize(self.activation),
        }

    @classmethod
    def from_conv(cls, conv, dtype):
        """The layer replacing `conv` (3x3, after upsampling and padding), with its weights."""
        kernel, bias = _kernel_and_bias(conv)
        layer = cls(conv.filters, conv.activation, dtype=dtype, name=f"{conv.name}_subpixel")
        layer.build((None, None, None, kernel.shape[2]))
        layer.set_weights(
            [ops.convert_to_numpy(subpixel.phase_kernel_3x3(kernel)), np.tile(bias, 4)]
        )
        return layer


def _valid_conv_shape(input_shape, kernel_size, filters):
    """Output shape of a stride-1 'valid' square convolution."""
    n, h, w, _ = input_shape
    grow = kernel_size - 1
    return (n, None if h is None else h - grow, None if w is None else w - grow, filters)


class SpaceToDepthConv2D(keras.layers.Layer):
    """A stride-1 'valid' convolution computed on `block` x `block` pixel blocks.

    The input is zero-padded at the bottom and right to whole blocks (those
    pixels only reach outputs that are cropped away), folded into channels,
    convolved with `space_to_depth_kernel`, unfolded and cropped. Same
    function as the original convolution; faster when it has few output
    channels. Inference only: the weights come from `from_conv`.

    Args:
        filters: output channels.
        kernel_size: side of the original square kernel.
        block: block side.
        activation: applied to the output (the replaced convolution's).
    """

    def __init__(self, filters, kernel_size, block=_BLOCK, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.block = filters, kernel_size, block
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        taps = (self.kernel_size + self.block - 2) // self.block + 1
        cells = self.block * self.block
        shape = (taps, taps, cells * input_shape[-1], cells * self.filters)
        self.kernel = self.add_weight(name="kernel", shape=shape)
        self.bias = self.add_weight(name="bias", shape=(cells * self.filters,), initializer="zeros")

    def call(self, x):
        b, k = self.block, self.kernel_size
        out_h, out_w = ops.shape(x)[1] - k + 1, ops.shape(x)[2] - k + 1
        taps = self.kernel.shape[0]
        # Rows needed: whole output blocks plus the kernel's reach, in blocks.
        need_h = ((out_h + b - 1) // b + taps - 1) * b
        need_w = ((out_w + b - 1) // b + taps - 1) * b
        x = ops.pad(
            x, [[0, 0], [0, need_h - ops.shape(x)[1]], [0, need_w - ops.shape(x)[2]], [0, 0]]
        )
        y = ops.conv(_space_to_depth(x, b), self.kernel) + self.bias
        return self.activation(subpixel.depth_to_space(y, b)[:, :out_h, :out_w])

    def compute_output_shape(self, input_shape):
        return _valid_conv_shape(input_shape, self.kernel_size, self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "block": self.block,
            "activation": keras.activations.serialize(self.activation),
        }

    @classmethod
    def from_conv(cls, conv, dtype):
        """The layer replacing `conv`, with its weights."""
        kernel, bias = _kernel_and_bias(conv)
        size = conv.kernel_size[0]
        name = f"{conv.name}_s2d"
        layer = cls(conv.filters, size, activation=conv.activation, dtype=dtype, name=name)
        layer.build((None, None, None, kernel.shape[2]))
        layer.set_weights([space_to_depth_kernel(kernel), np.tile(bias, _BLOCK * _BLOCK)])
        return layer


class GatherReflectionPadding2D(ks_layers.ReflectionPadding2D):
    """`ReflectionPadding2D` as one gather (`core.padding.gather_pad_2d`).

    The same function; on CPUs about twice as fast as TensorFlow's MirrorPad
    kernel, whose passes cost more than the convolutions they pad once AMX
    runs those. Inference only.
    """

    def call(self, inputs):
        p = self.padding
        return padding.gather_pad_2d(inputs, p, p, p, p)


class CondPadToMultiple(ks_layers.PadToMultiple):
    """`PadToMultiple` that skips its copy when a dynamic size already fits.

    The traced inference function takes any size, so the plain layer always
    pads (by `multiple - 1`) and slices: 1.5 ms at 512x512 for nothing. A
    conditional returns sizes that are multiples of `multiple` untouched.
    """

    def call(self, inputs):
        h, w = inputs.shape[1], inputs.shape[2]
        if h is not None and w is not None:
            return super().call(inputs)
        shape, m = ops.shape(inputs), self.multiple
        fits = ops.logical_and(ops.equal(shape[1] % m, 0), ops.equal(shape[2] % m, 0))
        return ops.cond(fits, lambda: inputs, lambda: super(CondPadToMultiple, self).call(inputs))


class SplitBfloat16Conv2D(keras.layers.Layer):
    """A convolution of float32 inputs in bfloat16 with about float32's accuracy.

    The input and the kernel are split into bfloat16 high and low parts,
    x = xh + xl and w = wh + wl, and one bfloat16 convolution of the
    channels [xh, xl, xh] with the kernel [wh; wh; wl] sums
    xh*wh + xl*wh + xh*wl: x*w up to xl*wl (about 2^-16 relative), with
    float32 accumulation. The output is bfloat16. For the first convolution
    of a network on RGB pixels, where AMX pads the 3 input channels anyway:
    a 9x9 convolution 3 -> 32 at 512x512 took 6.2 ms this way against 9.9 ms
    in float32 (2.3 ms in plain bfloat16, whose rounding of the pixels and
    weights cost 3 to 4 dB). Takes 'valid' stride-1 convolutions only.
    Inference only: the weights come from `from_conv`.

    Args:
        filters: output channels.
        kernel_size: side of the square kernel.
        activation: applied to the output (the replaced convolution's).
    """

    def __init__(self, filters, kernel_size, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = filters, kernel_size
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        k = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel", shape=(k, k, 3 * input_shape[-1], self.filters)
        )
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, x):
        x = ops.cast(x, "float32")
        high = ops.cast(x, "bfloat16")
        low = ops.cast(x - ops.cast(high, "float32"), "bfloat16")
        y = ops.conv(ops.concatenate([high, low, high], axis=-1), ops.cast(self.kernel, "bfloat16"))
        return self.activation(y + ops.cast(self.bias, "bfloat16"))

    def compute_output_shape(self, input_shape):
        return _valid_conv_shape(input_shape, self.kernel_size, self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "activation": keras.activations.serialize(self.activation),
        }

    @classmethod
    def from_conv(cls, conv, scale=1.0, offset=0.0):
        """The layer replacing `conv` (float32 policy: it casts itself), with its weights.

        `scale` and `offset` fold a preceding per-pixel `x * scale + offset`
        into the weights: the layer then takes the unscaled input.
        """
        kernel, bias = _kernel_and_bias(conv)
        bias = bias + offset * kernel.sum(axis=(0, 1, 2))
        kernel = kernel * np.float32(scale)
        high = np.asarray(keras.ops.convert_to_numpy(ops.cast(kernel, "bfloat16")), np.float32)
        split = np.concatenate([high, high, kernel - high], axis=2)
        size = conv.kernel_size[0]
        name = f"{conv.name}_split"
        layer = cls(conv.filters, size, conv.activation, dtype="float32", name=name)
        layer.build((None, None, None, kernel.shape[2]))
        layer.set_weights([split, bias.astype(np.float32)])
        return layer


class FusedInstanceNormalization(ks_layers.InstanceNormalization):
    """`InstanceNormalization` as one fused batch-norm kernel for single images (TensorFlow).

    For a batch of one image, instance norm is batch norm with batch
    statistics. TensorFlow's `FusedBatchNormV3` (oneDNN on CPUs) computes it
    in one fused kernel, with float32 statistics for bfloat16 inputs: 2.5 to
    7 times faster than the four separate passes of the plain formula at the
    network's sizes. Other batch sizes, unknown ones and other backends use
    the plain formula.
    """

    def call(self, inputs, training=None):
        if keras.backend.backend() != "tensorflow" or inputs.shape[0] != 1:
            return super().call(inputs)
        return ks_layers.fused_instance_norm(inputs, self.gamma, self.beta, self.epsilon)


def _kernel_and_bias(conv):
    kernel = np.asarray(conv.kernel.numpy(), np.float32)
    bias = conv.bias.numpy() if conv.use_bias else np.zeros(conv.filters, np.float32)
    return kernel, np.asarray(bias, np.float32)


def _plain_conv(layer, kernel_size=None):
    """Whether `layer` is a stride-1, 'valid', undilated, ungrouped square Conv2D in NHWC."""
    return (
        type(layer) in (keras.layers.Conv2D, ks_layers.Conv2D)  # the latter: same at inference
        and layer.strides == (1, 1)
        and layer.padding == "valid"
        and layer.dilation_rate == (1, 1)
        and layer.groups == 1
        and layer.data_format == "channels_last"
        and layer.kernel_size[0] == layer.kernel_size[1]
        and kernel_size in (None, layer.kernel_size[0])
    )


def _float32_ends(model):
    """Ids of the layers kept in float32 under bfloat16: the input and output ends.

    The input end runs up to and including the first layer with weights (the
    first convolution sees the full-precision image: +3 to 4 dB PSNR for 3%
    of the time); the output end follows the last layer with weights
    (activation and scaling to [0, 255], where bfloat16 would quantize pixel
    values in steps of 1 to 2).
    """
    weighted = [i for i, layer in enumerate(model.layers) if layer.weights]
    if not weighted:
        return {id(layer) for layer in model.layers}
    ends = model.layers[: weighted[0] + 1] + model.layers[weighted[-1] + 1 :]
    return {id(layer) for layer in ends}


#: First convolutions with at most this many input channels run as `SplitBfloat16Conv2D`.
_SPLIT_MAX_CHANNELS = 4


def _first_conv_on_pixels(model):
    """The model's first layer with weights if it is a plain conv on a few channels, else None."""
    first = next((layer for layer in model.layers if layer.weights), None)
    if first is not None and _plain_conv(first) and first.kernel.shape[2] <= _SPLIT_MAX_CHANNELS:
        return first
    return None


def _only_parent(layer):
    """The layer feeding `layer`'s single call from a single input, else None."""
    nodes = layer._inbound_nodes
    if len(nodes) != 1 or len(nodes[0].parent_nodes) != 1:
        return None
    return nodes[0].parent_nodes[0].operation


def _foldable_rescaling(conv):
    """A scalar `Rescaling` before `conv` (possibly through reflection padding) to fold, or None.

    Only when each layer of the chain feeds nothing else: a per-pixel affine
    map commutes with reflection padding and folds into the convolution.
    """
    parent = _only_parent(conv)
    if isinstance(parent, ks_layers.ReflectionPadding2D) and len(parent._outbound_nodes) == 1:
        parent = _only_parent(parent)
    if (
        type(parent) is keras.layers.Rescaling
        and len(parent._outbound_nodes) == 1
        and np.ndim(parent.scale) == 0
        and np.ndim(parent.offset) == 0
    ):
        return parent
    return None


class _Rewriter:
    """`clone_model` callbacks: copies layers under a dtype policy and rewrites chains.

    Upsampling and padding layers are still called (their outputs are
    remembered, and stay unused when a convolution replaces the chain), so a
    chain whose intermediate tensors have other consumers stays correct.
    """

    def __init__(self, model, precision):
        self.policy = "mixed_bfloat16" if precision == "bfloat16" else "float32"
        self.keep_float32 = _float32_ends(model)
        self.split_first = precision == "bfloat16" and _first_conv_on_pixels(model)
        self.folded = _foldable_rescaling(self.split_first) if self.split_first else None
        self.upsampled = {}  # id(upsampled tensor) -> its low-resolution input
        self.padded = {}  # id(padded upsampled tensor) -> the low-resolution input

    def _policy_of(self, layer):
        """bfloat16 weights for convolutions (no cast per call), else the mixed policy."""
        if self.policy == "mixed_bfloat16" and isinstance(layer, keras.layers.Conv2D):
            return "bfloat16"
        return self.policy

    def clone(self, layer):
        overrides = {}
        if id(layer) not in self.keep_float32 and "dtype" in layer.get_config():
            overrides["dtype"] = self._policy_of(layer)
        cls = layer.__class__
        if cls is ks_layers.InstanceNormalization:
            cls = FusedInstanceNormalization
        if cls is ks_layers.ReflectionPadding2D:
            cls = GatherReflectionPadding2D
        if cls is ks_layers.PadToMultiple:
            cls = CondPadToMultiple
        return cloning.copy_layer(layer, cls, **overrides)

    def call(self, layer, copy, *args, **kwargs):
        x = args[0] if args else None
        if isinstance(layer, ks_layers.NearestUpsampling2D) and layer.factor == 2:
            out = copy(*args, **kwargs)
            self.upsampled[id(out)] = x
            return out
        if isinstance(layer, ks_layers.ReflectionPadding2D) and layer.padding == 1:
            out = copy(*args, **kwargs)
            if id(x) in self.upsampled:
                self.padded[id(out)] = self.upsampled[id(x)]
            return out
        if self.folded is not None and layer is self.folded:
            return x  # folded into the first convolution's weights
        if self.split_first and layer is self.split_first and not kwargs and len(args) == 1:
            if self.folded is None:
                return SplitBfloat16Conv2D.from_conv(layer)(x)
            scale, offset = float(self.folded.scale), float(self.folded.offset)
            return SplitBfloat16Conv2D.from_conv(layer, scale, offset)(x)
        if _plain_conv(layer, 3) and id(x) in self.padded and not kwargs and len(args) == 1:
            return SubpixelUpConv2D.from_conv(layer, copy.dtype_policy)(self.padded[id(x)])
        if _plain_conv(layer) and layer.filters < _S2D_MAX_FILTERS and layer.kernel_size[0] > 1:
            if not kwargs and len(args) == 1:
                return SpaceToDepthConv2D.from_conv(layer, copy.dtype_policy)(x)
        return copy(*args, **kwargs)


def is_functional(model):
    """Whether `model` is a Functional `keras.Model` (one that `inference_copy` can rewrite)."""
    return isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth")


def inference_copy(model, precision="float32"):
    """A faster copy of a Functional network for inference, with the same weights.

    Args:
        model: a Functional `keras.Model` (e.g. a `TransformerNet`).
        precision: "float32" (same results up to rounding) or "bfloat16"
            (bfloat16 compute, float32 statistics and output).

    Returns:
        A new Functional `keras.Model` with the same inputs and outputs.

    Raises:
        ValueError: for an unknown precision or a model that is not Functional.
    """
    check_precision(precision)
    if not is_functional(model):
        raise ValueError(f"inference_copy needs a Functional keras.Model, got {type(model)}")
    rewriter = _Rewriter(model, precision)
    return cloning.clone_functional(model, rewriter.clone, rewriter.call)
