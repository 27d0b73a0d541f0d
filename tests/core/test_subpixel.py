import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_style.core import subpixel
from keras_style.core.transformer_net import TransformerNet


def _chain(x, kernel, bias):
    """The reference: nearest x2, reflection padding by 1, 'valid' 3x3 convolution."""
    up = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    padded = np.pad(up, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    return np.asarray(tf.nn.conv2d(padded, kernel, 1, "VALID")) + bias


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 4, 4, 6)])
def test_upsample_conv_equals_upsample_pad_conv(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype("float32")
    kernel = rng.normal(size=(3, 3, shape[-1], 5)).astype("float32")
    bias = rng.normal(size=5).astype("float32")
    out = np.asarray(subpixel.upsample_conv(x, kernel, bias))
    assert out.shape == (shape[0], 2 * shape[1], 2 * shape[2], 5)
    np.testing.assert_allclose(out, _chain(x, kernel, bias), atol=1e-4)


def test_phase_kernel_3x3_places_each_phase_in_its_corner():
    kernel = np.arange(3 * 3 * 1 * 2, dtype="float32").reshape(3, 3, 1, 2)
    big = np.asarray(subpixel.phase_kernel_3x3(kernel)).reshape(3, 3, 1, 4, 2)
    for i, (a, b) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        phase = big[..., i, :]
        np.testing.assert_array_equal(np.delete(np.delete(phase, 2 - 2 * a, 0), 2 - 2 * b, 1),
                                      np.asarray(subpixel.phase_kernels(kernel)[i]))  # fmt: skip
        assert not phase[2 - 2 * a].any() and not phase[:, 2 - 2 * b].any()
    # Every tap of the 3x3 kernel lands in each phase once: the sums agree.
    np.testing.assert_allclose(
        big.sum(axis=(0, 1)), np.repeat(kernel.sum(axis=(0, 1))[:, None], 4, 1)
    )


def _net_and_batch(head="clip"):
    keras.utils.set_random_seed(1)
    net = TransformerNet(width=0.25, head=head)
    images = np.random.default_rng(2).uniform(0, 255, (2, 18, 22, 3)).astype("float32")
    return net, images


@pytest.mark.parametrize("head", ["tanh", "clip", "residual"])
def test_training_pass_computes_the_same_function_and_gradients(head, monkeypatch):
    net, images = _net_and_batch(head)
    up_kernels = [net.get_layer(f"{b}_conv").kernel for b in ("up1", "up2")]
    weights = np.random.default_rng(3).normal(size=images.shape).astype("float32")

    def grads():
        with tf.GradientTape() as tape:
            out = net(images, training=True)
            loss = tf.reduce_sum(out * weights)
        return out, tape.gradient(loss, up_kernels)

    fast, fast_grads = grads()
    monkeypatch.setattr(subpixel, "_Rewrite", lambda: lambda op: op)  # the plain training pass
    plain, plain_grads = grads()
    np.testing.assert_allclose(fast, plain, atol=2e-3)
    for g_fast, g_plain in zip(fast_grads, plain_grads, strict=True):
        assert isinstance(g_fast, tf.Tensor)  # dense: no IndexedSlices for the optimizer
        scale = np.abs(g_plain).max()
        np.testing.assert_allclose(g_fast / scale, g_plain / scale, atol=1e-4)


def test_training_graph_has_no_upsampling_or_padding_of_the_large_tensors():
    net, images = _net_and_batch()

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(net(x, training=True))
        return tape.gradient(loss, net.trainable_variables)

    graph = step.get_concrete_function(tf.TensorSpec((2, 20, 24, 3))).graph
    kinds = {op.type for op in graph.get_operations()}
    assert "Conv2DBackpropFilter" in kinds
    assert "ResizeNearestNeighborGrad" not in kinds
    # Reflection padding differentiated: 2 per residual block, the two downsampling blocks
    # and the head (the stem's input needs no gradient); the upsampling blocks pad only
    # their low-resolution inputs (edge padding, "SYMMETRIC" by 1).
    modes = [op.get_attr("mode") for op in graph.get_operations() if op.type == "MirrorPadGrad"]
    assert modes.count(b"REFLECT") == 2 * 5 + 2 + 1
    assert modes.count(b"SYMMETRIC") == 2
