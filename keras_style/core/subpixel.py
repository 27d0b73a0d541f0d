"""Nearest x2 upsampling and a reflection-padded 3x3 convolution, computed at the low resolution.

The network's upsampling blocks (`transformer_net._upsample_block`) upsample
by 2 with nearest neighbours, reflection-pad by 1 and convolve 3x3. An
output pixel's 3x3 window on the upsampled image covers only 2x2 distinct
low-resolution pixels, so the chain is four 2x2 convolutions on the
low-resolution image (one per output phase), interleaved ("sub-pixel
convolution"); reflection padding of the upsampled image equals edge padding
of the low-resolution one. The four can also run as one 3x3 convolution to
4x the channels (`phase_kernel_3x3`), which reads the input once and needs
no slices.

Everything here is `keras.ops` on the 3x3 kernel, so it is differentiable:
`call_with_subpixel_upsampling` runs a Functional network's training pass
through it (the weights stay the 3x3 kernels that are saved, exported and
loaded), and `keras_style.fast.graph` / `keras_style.export.graph` use the
same kernels for their inference rewrites.
"""

import keras
from keras import ops


def phase_kernels(kernel):
    """The four 2x2 kernels of nearest x2 upsampling followed by a 3x3 convolution.

    Output row 2i + a of the upsampled-then-convolved image reads upsampled
    rows 2i + a - 1 .. 2i + a + 1, i.e. edge-padded input rows (i, i + 1,
    i + 1) for a = 0 and (i + 1, i + 1, i + 2) for a = 1 (padded indices);
    taps that read the same input row are summed. Likewise for columns.

    Args:
        kernel: (3, 3, C_in, C_out) array or tensor.

    Returns:
        A list of four (2, 2, C_in, C_out) tensors, phases ordered (0, 0),
        (0, 1), (1, 0), (1, 1).
    """

    def fold(k, phase, axis):
        t0, t1, t2 = (k[i] if axis == 0 else k[:, i] for i in range(3))  # slices: dense gradients
        pair = (t0, t1 + t2) if phase == 0 else (t0 + t1, t2)
        return ops.stack(pair, axis=axis)

    kernel = ops.convert_to_tensor(kernel)
    return [fold(fold(kernel, a, 0), b, 1) for a in (0, 1) for b in (0, 1)]


def phase_kernel_3x3(kernel):
    """The four phase kernels as one 3x3 kernel with 4x the output channels.

    Phase (a, b) reads rows a..a+1 and columns b..b+1 of the edge-padded
    low-resolution input; the other taps of its 3x3 window are zero. One
    convolution with this kernel computes all four phases, channels ordered
    (phase, channel) as `depth_to_space` expects.

    Args:
        kernel: (3, 3, C_in, C_out) array or tensor (the replaced convolution's).

    Returns:
        A (3, 3, C_in, 4 * C_out) tensor.
    """
    placed = [
        ops.pad(k, [[a, 1 - a], [b, 1 - b], [0, 0], [0, 0]])
        for k, (a, b) in zip(phase_kernels(kernel), ((0, 0), (0, 1), (1, 0), (1, 1)), strict=True)
    ]
    c_in, c_out = kernel.shape[2], kernel.shape[3]
    return ops.reshape(ops.stack(placed, axis=3), (3, 3, c_in, 4 * c_out))


def depth_to_space(x, block):
    """(N, H, W, b*b*C) -> (N, H*b, W*b, C), channels read as (row, column, channel)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.nn.depth_to_space(x, block)
    n, h, w = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
    c = x.shape[-1] // (block * block)
    x = ops.reshape(x, (n, h, w, block, block, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (n, h * block, w * block, c))


def upsample_conv(x, kernel, bias=None):
    """Nearest x2 upsampling, 1-pixel reflection padding and a 'valid' 3x3 convolution of `x`.

    Computed at the low resolution as one convolution with `phase_kernel_3x3`
    (same multiply-adds as the chain, no upsampled or padded copy of the
    large tensor). Differentiable in `x`, `kernel` and `bias`.

    Args:
        x: (N, H, W, C_in) tensor.
        kernel: (3, 3, C_in, C_out) kernel, in `x`'s dtype.
        bias: optional (C_out,) bias.

    Returns:
        The (N, 2H, 2W, C_out) output.
    """
    padded = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="symmetric")  # = edge by 1
    y = ops.conv(padded, phase_kernel_3x3(kernel))
    if bias is not None:
        y = y + ops.tile(bias, [4])
    return depth_to_space(y, 2)


def _is_upsample_conv(layer):
    """Whether `layer` is a plain stride-1 'valid' 3x3 `Conv2D` (the chain's convolution)."""
    return (
        isinstance(layer, keras.layers.Conv2D)
        and tuple(layer.kernel_size) == (3, 3)
        and tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.padding == "valid"
        and layer.groups == 1
        and layer.data_format == "channels_last"
    )


class _Rewrite:
    """`operation_fn` for `Functional._run_through_graph` replacing upsample-pad-conv chains.

    Upsampling and padding layers still run (their outputs are remembered);
    when a 3x3 convolution consumes such a padded tensor it is computed by
    `upsample_conv` from the low-resolution input instead, and the unused
    upsampled and padded tensors are dropped by the graph compiler
    (`tf.function`, XLA). Tensors that have other consumers stay correct.
    """

    def __init__(self):
        from keras_style.core import layers as ks_layers  # noqa: PLC0415 (import cycle)

        self.layers = ks_layers
        self.upsampled = {}  # id(upsampled tensor) -> low-resolution input
        self.padded = {}  # id(padded upsampled tensor) -> low-resolution input

    def __call__(self, op):
        def call(*args, **kwargs):
            x = args[0] if len(args) == 1 and not kwargs else None
            if x is None:
                return op(*args, **kwargs)
            if isinstance(op, self.layers.NearestUpsampling2D) and op.factor == 2:
                out = op(x)
                self.upsampled[id(out)] = x
                return out
            if isinstance(op, self.layers.ReflectionPadding2D) and op.padding == 1:
                out = op(x)
                if id(x) in self.upsampled:
                    self.padded[id(out)] = self.upsampled[id(x)]
                return out
            if id(x) in self.padded and _is_upsample_conv(op):
                return _conv_from_low(op, self.padded[id(x)])
            return op(x)

        return call


def _conv_from_low(conv, low):
    """`conv` applied to the upsampled, padded `low`, computed by `upsample_conv`."""
    dtype = conv.compute_dtype
    bias = ops.cast(conv.bias, dtype) if conv.use_bias else None
    y = upsample_conv(ops.cast(low, dtype), ops.cast(conv.kernel, dtype), bias)
    return conv.activation(y) if conv.activation is not None else y


def call_with_subpixel_upsampling(model, inputs):
    """Runs Functional `model` on `inputs` with its upsample-pad-conv chains at low resolution.

    The same function as `model(inputs)` up to float rounding, with the same
    variables (gradients reach the 3x3 kernels), for the training pass.

    Args:
        model: a Functional `keras.Model` (e.g. a `TransformerNet`), called
            from inside its own `call` so Keras' call context (training,
            dtype policy) applies to its layers.
        inputs: its input tensor.

    Returns:
        The model's output.
    """
    outputs = model._run_through_graph(model._standardize_inputs(inputs), operation_fn=_Rewrite())
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        return outputs[0]
    return outputs
