"""Building blocks of the feed-forward stylizer, written to convert cleanly to TFLite.

Every layer here is plain `keras.ops` on NHWC tensors with dynamic height and
width, registered as a Keras serializable so that `keras.saving.load_model`
needs no `custom_objects`. The op choices follow what TFLite (and its mobile
GPU delegates) accept:

- reflection padding lowers to one MIRROR_PAD in REFLECT mode;
- instance normalization is `mean`, `sub`, `mul` and `rsqrt` on 4-D tensors
  (no SQUARED_DIFFERENCE, no DIV, no 5-D reshapes);
- nearest-neighbour upsampling is one RESIZE_NEAREST_NEIGHBOR (Keras'
  `UpSampling2D` uses `repeat`, which loses the channel size on dynamic
  shapes);
- when height and width are static (fixed-size export), sizes and paddings are
  Python constants, so no SHAPE ops reach the converted graph.
"""

import keras
from keras import ops


def _static_or_dynamic_hw(x):
    """(height, width) as Python ints when static, else as scalar tensors."""
    static = x.shape[1], x.shape[2]
    if static[0] is not None and static[1] is not None:
        return int(static[0]), int(static[1])
    dynamic = ops.shape(x)
    return (
        static[0] if static[0] is not None else dynamic[1],
        static[1] if static[1] is not None else dynamic[2],
    )


def _check_padding(value, name):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


@keras.saving.register_keras_serializable(package="keras_style")
class ReflectionPadding2D(keras.layers.Layer):
    """Pads height and width by mirroring the border (without repeating the edge pixel).

    Reflection padding avoids the dark frame that zero padding leaves around
    stylized images. Each padded side must be smaller than the input side.

    Args:
        padding: pixels added on each side of height and width.
    """

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.padding = _check_padding(padding, "padding")

    def call(self, inputs):
        p = self.padding
        if p == 0:
            return inputs
        return ops.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        grow = 2 * self.padding
        n, h, w, c = input_shape
        return (n, None if h is None else h + grow, None if w is None else w + grow, c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def fused_instance_norm(x, gamma, beta, epsilon):
    """Instance norm as one fused batch-norm kernel per image (TensorFlow, static batch size).

    For one image, instance norm is batch norm with batch statistics;
    TensorFlow's `FusedBatchNormV3` (oneDNN on CPUs) computes it, and its
    gradient, in one kernel each with float32 statistics for bfloat16 inputs.
    Forward and backward at a training step's shapes (batch 4, bfloat16) it
    ran 2.8 to 3.5 times faster than the plain formula of
    `InstanceNormalization` on a CPU with AMX. The same function up to
    float rounding.

    Args:
        x: (N, H, W, C) tensor with a static N.
        gamma, beta: (C,) scale and offset, or None for 1 and 0.
        epsilon: added to the variance.
    """
    import tensorflow as tf

    channels = x.shape[-1]
    scale = tf.ones((channels,)) if gamma is None else tf.cast(gamma, tf.float32)
    offset = tf.zeros((channels,)) if beta is None else tf.cast(beta, tf.float32)
    empty = tf.constant([], tf.float32)

    def one(image):
        out = tf.raw_ops.FusedBatchNormV3(
            x=image,
            scale=scale,
            offset=offset,
            mean=empty,
            variance=empty,
            epsilon=epsilon,
            is_training=True,
        )
        return out[0]

    if x.shape[0] == 1:
        return one(x)
    return tf.concat([one(image) for image in tf.split(x, x.shape[0], axis=0)], axis=0)


@keras.saving.register_keras_serializable(package="keras_style")
class InstanceNormalization(keras.layers.Layer):
    """Normalizes each channel of each image over its height and width, then an affine map.

    Written as `d = x - mean; d * rsqrt(mean(d * d) + eps)` on 4-D tensors so
    that it converts to TFLite ops that every backend, quantization mode and
    GPU delegate supports. Under mixed precision the statistics are computed in
    float32. In training under TensorFlow (static batch size) it runs as
    `fused_instance_norm` instead: the same function, 3x faster forward and
    backward on CPUs.

    Args:
        epsilon: added to the variance before `rsqrt`.
        center: learn a per-channel offset (beta).
        scale: learn a per-channel scale (gamma).
    """

    def __init__(self, epsilon=1e-5, center=True, scale=True, **kwargs):
        super().__init__(**kwargs)
        if not epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("InstanceNormalization needs a known channel count")
        self.gamma = (
            self.add_weight(name="gamma", shape=(channels,), initializer="ones")
            if self.scale
            else None
        )
        self.beta = (
            self.add_weight(name="beta", shape=(channels,), initializer="zeros")
            if self.center
            else None
        )

    def call(self, inputs, training=None):
        if training and keras.backend.backend() == "tensorflow" and inputs.shape[0] is not None:
            return fused_instance_norm(inputs, self.gamma, self.beta, self.epsilon)
        x = inputs
        low_precision = self.compute_dtype in ("float16", "bfloat16")
        if low_precision:
            x = ops.cast(x, "float32")
        d = x - ops.mean(x, axis=(1, 2), keepdims=True)
        var = ops.mean(d * d, axis=(1, 2), keepdims=True)
        y = d * ops.rsqrt(var + self.epsilon)
        if self.gamma is not None:
            y = y * ops.cast(self.gamma, y.dtype)
        if self.beta is not None:
            y = y + ops.cast(self.beta, y.dtype)
        return ops.cast(y, self.compute_dtype) if low_precision else y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
        }


@keras.saving.register_keras_serializable(package="keras_style")
class NearestUpsampling2D(keras.layers.Layer):
    """Nearest-neighbour upsampling by an integer factor, as one resize op.

    Upsampling followed by a convolution avoids the checkerboard artefacts of
    transposed convolutions (Odena et al. 2016).

    Args:
        factor: integer scale factor for height and width.
    """

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor!r}")
        self.factor = factor

    def call(self, inputs):
        if self.factor == 1:
            return inputs
        h, w = _static_or_dynamic_hw(inputs)
        size = (h * self.factor, w * self.factor)
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            # keras.ops.image.resize validates `size` in Python, which fails on
            # the dynamic sizes of a traced graph.
            return tf.image.resize(inputs, size, method="nearest")
        return ops.image.resize(inputs, size, interpolation="nearest")

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        f = self.factor
        return (n, None if h is None else h * f, None if w is None else w * f, c)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="keras_style")
class PadToMultiple(keras.layers.Layer):
    """Reflection-pads the bottom and right so height and width become multiples of `multiple`.

    The network halves the resolution twice and doubles it twice; padding the
    input to a multiple of 4 (and cropping back with `CropToReference`) makes
    the output exactly as large as the input for any size, odd ones included.
    Needs sides of at least `multiple` pixels. Without any op when the static
    size already fits.

    Args:
        multiple: the size multiple to reach.
    """

    def __init__(self, multiple=4, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(multiple, int) or isinstance(multiple, bool) or multiple < 1:
            raise ValueError(f"multiple must be a positive integer, got {multiple!r}")
        self.multiple = multiple

    def call(self, inputs):
        h, w = _static_or_dynamic_hw(inputs)
        m = self.multiple
        if isinstance(h, int) and isinstance(w, int):
            pad_h, pad_w = -h % m, -w % m
            if pad_h == pad_w == 0:
                return inputs
            return ops.pad(inputs, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="reflect")
        # Dynamic size: a padding computed from the shape makes tf.pad forget
        # the channel count (the converted convolution then needs Flex ops).
        # Reflecting by the largest amount with constant paddings, then
        # slicing, gives the same pixels and keeps every static dimension.
        most = m - 1
        padded = ops.pad(inputs, [[0, 0], [0, most], [0, most], [0, 0]], mode="reflect")
        return padded[:, : (h + most) // m * m, : (w + most) // m * m, :]

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        m = self.multiple
        return (n, None if h is None else -(-h // m) * m, None if w is None else -(-w // m) * m, c)

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="keras_style")
class CropToReference(keras.layers.Layer):
    """Crops `[x, reference]` to the height and width of `reference` (top-left aligned).

    Undoes `PadToMultiple`. A no-op when the static sizes already agree.
    """

    def call(self, inputs):
        x, reference = inputs
        if x.shape[1:3] == reference.shape[1:3] and None not in x.shape[1:3]:
            return x
        h, w = _static_or_dynamic_hw(reference)
        return x[:, :h, :w, :]

    def compute_output_shape(self, input_shape):
        x_shape, ref_shape = input_shape
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])


@keras.saving.register_keras_serializable(package="keras_style")
class Conv2D(keras.layers.Conv2D):
    """A stride-1 'valid' `keras.layers.Conv2D` with a cheap training pass for few filters.

    Same weights, same config and same outputs as `keras.layers.Conv2D`, and
    the same class name on purpose: Keras names a layer's entry in a weights
    file after its class, so the name keeps every saved network, checkpoint
    and bundled style loadable into networks that use this layer and back.
    At inference (and in every export) it is `keras.layers.Conv2D`. In training, a k x k
    convolution to `filters` channels is computed as a 1 x k convolution to
    k * filters channels (one group of filters per kernel row) followed by the
    sum of k row-shifted slices. oneDNN's weight gradient is very slow for a
    convolution with few output channels and a large kernel (the network's
    9x9 output convolution to 3 channels took 15% of a training step); the
    split form's gradients are ordinary wide convolutions and slices, 3.9x
    faster for that layer on a 2-core AVX2 CPU (`bench/bench_train_ops.py`).
    Only in float32: with bfloat16 compute (chosen where the CPU has AMX or
    runs bfloat16 natively) oneDNN's plain gradient is the faster one (9x9,
    32 -> 3 channels at 264 px, batch 4, forward and backward on AMX: 33 ms
    plain against 73 ms split).

    Args:
        filters, kernel_size, **kwargs: as for `keras.layers.Conv2D`; strides,
            dilation and groups must stay 1 and padding "valid".
    """

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        plain = (
            tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
            and self.padding == "valid"
            and self.data_format == "channels_last"
        )
        if not plain:
            raise ValueError(
                "keras_style.core.layers.Conv2D needs strides=1, dilation_rate=1, groups=1, "
                "padding='valid' and channels_last data"
            )

    def call(self, inputs, training=None):
        if not training or self.compute_dtype != "float32":
            return super().call(inputs)
        outputs = _row_split_conv(inputs, self.kernel)
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs


def _row_split_conv(x, kernel):
    """`ops.conv(x, kernel, padding="valid")` as a 1 x k conv to k groups plus shifted sums."""
    rows, cols, channels, filters = kernel.shape
    per_row = ops.reshape(ops.transpose(kernel, (1, 2, 0, 3)), (1, cols, channels, rows * filters))
    grouped = ops.conv(x, per_row, strides=1, padding="valid")  # (N, H, W - cols + 1, rows * f)
    height = ops.shape(x)[1] - rows + 1
    return sum(grouped[:, i : i + height, :, i * filters : (i + 1) * filters] for i in range(rows))


@keras.saving.register_keras_serializable(package="keras_style")
class StraightThroughClip(keras.layers.Layer):
    """Clips to `[lower, upper]`; in training, passes gradients that pull pixels back in range.

    An output head for image networks: the output is always a valid image,
    yet a pixel pushed past the range still gets the loss gradient that pulls
    it back (a tanh head saturates there and its gradient vanishes, which
    lets saturated white or yellow blobs persist through training).

    The gradient is gated: a pixel outside the range gets no gradient that
    would push it further out. A plain straight-through gradient lets such
    pixels drift without bound (pre-clip values in the thousands after 1700
    steps of the Matisse preset), which shows as flat saturated patches that
    take hundreds of steps to come back. At inference this is a plain clip
    (`minimum`/`maximum`, builtin TFLite ops).

    Args:
        lower, upper: the output range.
    """

    def __init__(self, lower=0.0, upper=255.0, **kwargs):
        super().__init__(**kwargs)
        if not lower < upper:
            raise ValueError(f"lower must be below upper, got {lower} and {upper}")
        self.lower, self.upper = float(lower), float(upper)

    def call(self, x, training=None):
        if not training:
            return ops.clip(x, self.lower, self.upper)
        return _gated_clip(x, self.lower, self.upper)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "lower": self.lower, "upper": self.upper}


def _gated_clip(x, lower, upper):
    """`clip(x)` whose gradient is the upstream one, except where it points out of range.

    Gradient descent moves `x` against the gradient, so above `upper` only a
    positive gradient (which lowers `x`) passes, and below `lower` only a
    negative one.
    """

    @ops.custom_gradient
    def clip(x):
        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            outward = ops.logical_or(
                ops.logical_and(x > upper, upstream < 0), ops.logical_and(x < lower, upstream > 0)
            )
            return ops.where(outward, ops.zeros_like(upstream), upstream)

        return ops.clip(x, lower, upper), grad

    return clip(x)
