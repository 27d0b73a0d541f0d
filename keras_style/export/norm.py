"""Instance norm with a per-channel epsilon: the one form both export rewrites use.

Channel equalization (`export_rewrite`) scales each channel `c` of a norm's
input by `k_c`; instance norm then gives the same output with epsilon
`eps * k_c**2`, a different constant per channel. `ChannelEpsilonNormalization`
holds that constant as a non-trainable float32 weight named `channel_epsilon`
(its initial value is the scalar epsilon, so before the rewrite assigns it the
layer computes what `InstanceNormalization` does). `export_graph`'s XNNPACK
form subclasses it and only reorders the arithmetic.
"""

import keras
from keras import ops

from keras_style.core import layers as ks_layers

#: Name of the per-channel epsilon weight (what `export_graph` looks for in a layer's weights).
CHANNEL_EPSILON = "channel_epsilon"


def has_channel_epsilon(layer):
    """Whether `layer` holds a per-channel epsilon weight."""
    return any(w.path.endswith(CHANNEL_EPSILON) for w in layer.weights)


class ChannelEpsilonNormalization(ks_layers.InstanceNormalization):
    """Instance norm whose epsilon is a per-channel constant (`channel_epsilon`, float32).

    What `InstanceNormalization` becomes when its input channels are scaled by
    `k_c`: `eps * k_c**2` keeps `d * rsqrt(var + eps)` unchanged. Computes
    `d * rsqrt(var + eps)`, then `* gamma` and `+ beta`, as the original does.

    Args:
        channel_epsilon: hold the epsilon as a per-channel weight (added after
            gamma and beta, so a copy of an `InstanceNormalization` takes the
            original's weights first); False keeps the scalar `epsilon`.
        **kwargs: the arguments of `InstanceNormalization`.
    """

    def __init__(self, channel_epsilon=True, **kwargs):
        super().__init__(**kwargs)
        self.use_channel_epsilon = bool(channel_epsilon)

    def build(self, input_shape):
        super().build(input_shape)
        self.channel_epsilon = None
        if self.use_channel_epsilon:
            self.channel_epsilon = self.add_weight(
                name=CHANNEL_EPSILON,
                shape=(input_shape[-1],),
                initializer=keras.initializers.Constant(self.epsilon),
                trainable=False,
            )

    def variance_epsilon(self):
        """What is added to the variance: the per-channel weight, or the scalar epsilon."""
        return self.channel_epsilon if self.channel_epsilon is not None else self.epsilon

    @staticmethod
    def centred_variance(inputs):
        """`(d, var)`: the input less its per-image channel means, and their mean square."""
        d = inputs - ops.mean(inputs, axis=(1, 2), keepdims=True)
        return d, ops.mean(d * d, axis=(1, 2), keepdims=True)

    def call(self, inputs):
        d, var = self.centred_variance(inputs)
        y = d * ops.rsqrt(var + self.variance_epsilon())
        if self.gamma is not None:
            y = y * self.gamma
        if self.beta is not None:
            y = y + self.beta
        return y

    def get_config(self):
        return {**super().get_config(), "channel_epsilon": self.use_channel_epsilon}
