"""The feed-forward image transformation network of Johnson et al. (2016).

Layout (channels at width 1.0):

    pad to a multiple of 4 (reflect)
    9x9 conv 32        -> instance norm -> ReLU
    3x3 conv 64, /2    -> instance norm -> ReLU
    3x3 conv 128, /2   -> instance norm -> ReLU
    5 residual blocks of two 3x3 convs 128
    nearest x2, 3x3 conv 64 -> instance norm -> ReLU
    nearest x2, 3x3 conv 32 -> instance norm -> ReLU
    9x9 conv 3 -> 127.5 * (tanh + 1)        (head="tanh", the paper's)
             or -> clip(127.5 * (x + 1))     (head="clip", straight-through gradient)
             or -> clip(input + 127.5 * x)   (head="residual", conv initialised to 0)
    crop back to the input size

with reflection padding before every convolution (Ulyanov et al.'s instance
norm; Odena et al.'s resize-convolution instead of transposed convolutions).
In training the two upsampling blocks run at the low resolution
(`core.subpixel`): the same function and weights without the upsampled and
padded copies of the largest tensors.
Input and output are float32 RGB in [0, 255], any batch size and any height
and width of at least 5 pixels; the output has the input's size.

The "residual" head predicts a change to the photo instead of a new image and
starts as the identity. It suits distillation (`keras_style.distill.training`): the
slow method's outputs are the photo plus what its optimisation added, so the
network learns only that difference and keeps the photo's fine detail, which
an encoder-decoder that redraws the image from 4x downsampled features blurs.
"""

import keras

from keras_style.core import layers as ks_layers
from keras_style.core import subpixel

#: Allowed width multipliers: 1.0 is the paper's network, the others are for mobile.
WIDTHS = (1.0, 0.5, 0.25)

#: Output heads: the paper's scaled tanh, a clip with a straight-through gradient,
#: or the photo plus a clipped change (see the module docstring).
HEADS = ("tanh", "clip", "residual")

#: Minimum input height and width accepted by the network.
MIN_SIDE = 5

_NUM_RESIDUAL_BLOCKS = 5


def _channels(base, width):
    return max(1, round(base * width))


def _conv(x, filters, kernel_size, strides, name, conv_class=keras.layers.Conv2D, **conv_kwargs):
    """Reflection padding then a 'valid' convolution."""
    x = ks_layers.ReflectionPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
    conv = conv_class(filters, kernel_size, strides=strides, name=f"{name}_conv", **conv_kwargs)
    return conv(x)


def _head_conv(x, **conv_kwargs):
    """The 9x9 convolution to RGB; its row-split training form is 3.9x faster to train."""
    return _conv(x, 3, 9, 1, "head", conv_class=ks_layers.Conv2D, **conv_kwargs)


def _conv_block(x, filters, kernel_size, strides, name, relu=True):
    """conv -> instance norm -> (ReLU)."""
    x = _conv(x, filters, kernel_size, strides, name)
    x = ks_layers.InstanceNormalization(name=f"{name}_norm")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _residual_block(x, filters, name):
    """Two 3x3 conv blocks with an identity shortcut and no activation after the sum."""
    y = _conv_block(x, filters, 3, 1, f"{name}_a")
    y = _conv_block(y, filters, 3, 1, f"{name}_b", relu=False)
    return keras.layers.Add(name=f"{name}_add")([x, y])


def _upsample_block(x, filters, name):
    """Nearest-neighbour x2 then a 3x3 conv block."""
    x = ks_layers.NearestUpsampling2D(2, name=f"{name}_upsample")(x)
    return _conv_block(x, filters, 3, 1, name)


def _check_width(width):
    if width not in WIDTHS:
        raise ValueError(f"width must be one of {WIDTHS}, got {width!r}")
    return float(width)


def _check_head(head):
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    return head


def _head(x, head, image):
    """The 9x9 output conv and its map to [0, 255] (float32 even under mixed precision).

    Args:
        x: the last upsampling block's output.
        head: one of `HEADS`.
        image: the padded input image in [0, 255], which the "residual" head adds to.
    """
    if head == "tanh":
        x = _head_conv(x)
        x = keras.layers.Activation("tanh", dtype="float32", name="head_tanh")(x)
        return keras.layers.Rescaling(127.5, offset=127.5, dtype="float32", name="scale_out")(x)
    if head == "clip":
        x = _head_conv(x)
        x = keras.layers.Rescaling(127.5, offset=127.5, dtype="float32", name="scale_out")(x)
    else:  # residual: starts as the identity, its gradient reaches the body after one step
        x = _head_conv(x, kernel_initializer="zeros")
        x = keras.layers.Rescaling(127.5, dtype="float32", name="scale_out")(x)
        x = keras.layers.Add(dtype="float32", name="residual_add")([image, x])
    return ks_layers.StraightThroughClip(0.0, 255.0, dtype="float32", name="head_clip")(x)


def transformer_layers(inputs, width=1.0, head="tanh"):
    """Applies the network to a symbolic [0, 255] RGB tensor; returns the [0, 255] output."""
    c1, c2, c3 = (_channels(c, width) for c in (32, 64, 128))
    padded = ks_layers.PadToMultiple(4, name="pad_to_multiple")(inputs)
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_in")(padded)
    x = _conv_block(x, c1, 9, 1, "stem")
    x = _conv_block(x, c2, 3, 2, "down1")
    x = _conv_block(x, c3, 3, 2, "down2")
    for i in range(_NUM_RESIDUAL_BLOCKS):
        x = _residual_block(x, c3, f"res{i + 1}")
    x = _upsample_block(x, c2, "up1")
    x = _upsample_block(x, c1, "up2")
    x = _head(x, head, padded)
    return ks_layers.CropToReference(dtype="float32", name="crop_to_input")([x, inputs])


@keras.saving.register_keras_serializable(package="keras_style")
class TransformerNet(keras.Model):
    """The Johnson et al. stylization network as a Keras 3 Functional model.

    Maps float32 RGB images in [0, 255], shaped (N, H, W, 3) with any N and any
    H, W >= 5, to stylized images of the same shape and range. `get_config()`
    holds only the constructor arguments, so `keras.saving.load_model` rebuilds
    it in a fresh process without `custom_objects`.

    Args:
        width: channel multiplier, one of `WIDTHS` (1.0 is the paper's
            network, 1.7M parameters; 0.25 is about 16 times smaller).
        head: output head, one of `HEADS`: "tanh" (the paper's), "clip"
            (a clip whose gradient passes straight through: no saturated
            region stops learning; no weights, so the parameters are the same)
            or "residual" (the input plus a clipped change, initially the
            identity; for distillation, where the targets are edited photos).
        name: model name.
        **kwargs: passed to `keras.Model` (e.g. `trainable`, `dtype`).

    Example:

    ```python
    net = TransformerNet(width=0.5)
    stylized = net(images)  # images: (N, H, W, 3) float32 in [0, 255]
    ```
    """

    def __init__(self, width=1.0, head="tanh", name="transformer_net", **kwargs):
        width, head = _check_width(width), _check_head(head)
        inputs = keras.Input((None, None, 3), dtype="float32", name="content")
        outputs = transformer_layers(inputs, width, head)
        super().__init__(inputs, outputs, name=name, **kwargs)
        self.width, self.head = width, head

    def call(self, inputs, training=None, mask=None):
        """The network; in training, its upsampling blocks run at the low resolution.

        Same function and weights either way (`core.subpixel`): the training
        pass skips the upsampled and padded copies of the two largest
        tensors and their gradients (on a 2-core AVX2 CPU in float32 the
        network's forward and backward pass on a 256 px batch of 4 went from
        3.52 s to 2.99 s at width 1.0, `bench/bench_train_ops.py`).
        """
        if training and mask is None:
            return subpixel.call_with_subpixel_upsampling(self, inputs)
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {
            "width": self.width,
            "head": self.head,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_transformer_net(width=1.0, name="transformer_net", head="tanh"):
    """Builds a `TransformerNet`: (None, None, None, 3) float32 [0, 255] -> same shape and range.

    Args:
        width: channel multiplier, one of `WIDTHS`.
        name: model name.
        head: output head, one of `HEADS`.

    Returns:
        A `TransformerNet` (a Functional `keras.Model`).
    """
    return TransformerNet(width=width, head=head, name=name)
