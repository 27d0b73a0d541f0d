"""Tests for keras_style.core.layers: values against NumPy references, shapes, serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_style.core import layers as ks_layers


def _images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def _round_trip(layer):
    """Serializes a layer to its config and back, the way load_model does."""
    return keras.layers.deserialize(keras.layers.serialize(layer))


def test_reflection_padding_matches_numpy():
    x = _images((2, 5, 7, 3))
    y = ks_layers.ReflectionPadding2D(2)(x)
    expected = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
    np.testing.assert_array_equal(np.asarray(y), expected)


def test_reflection_padding_shape_and_config():
    layer = ks_layers.ReflectionPadding2D(4, name="pad")
    assert layer.compute_output_shape((None, None, 10, 3)) == (None, None, 18, 3)
    clone = _round_trip(layer)
    assert isinstance(clone, ks_layers.ReflectionPadding2D)
    assert clone.padding == 4 and clone.name == "pad"


@pytest.mark.parametrize("bad", [-1, 1.5, None, True])
def test_reflection_padding_rejects_bad_padding(bad):
    with pytest.raises(ValueError, match="padding"):
        ks_layers.ReflectionPadding2D(bad)


def test_instance_norm_matches_reference():
    x = _images((2, 6, 5, 4))
    layer = ks_layers.InstanceNormalization(epsilon=1e-3)
    layer.build(x.shape)
    gamma = np.arange(1, 5, dtype="float32")
    beta = np.arange(4, dtype="float32") - 2
    layer.set_weights([gamma, beta])
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-4, atol=1e-4)


def test_instance_norm_normalizes_each_image_and_channel():
    x = _images((3, 8, 8, 2)) * np.array([0.1, 3.0], "float32") + 50
    y = np.asarray(ks_layers.InstanceNormalization()(x))
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(1, 2)), 1, atol=1e-2)


def test_instance_norm_without_affine_has_no_weights_and_round_trips():
    layer = ks_layers.InstanceNormalization(center=False, scale=False, epsilon=1e-4)
    layer.build((None, None, None, 3))
    assert layer.weights == []
    clone = _round_trip(layer)
    assert (clone.center, clone.scale, clone.epsilon) == (False, False, 1e-4)


def test_instance_norm_rejects_bad_epsilon():
    with pytest.raises(ValueError, match="epsilon"):
        ks_layers.InstanceNormalization(epsilon=0)


def test_instance_norm_under_mixed_precision_returns_compute_dtype():
    layer = ks_layers.InstanceNormalization(dtype="mixed_float16")
    y = layer(_images((1, 4, 4, 2)).astype("float16"))
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert np.all(np.isfinite(np.asarray(y, dtype="float32")))


def test_nearest_upsampling_matches_repeat():
    x = _images((2, 3, 5, 2))
    y = np.asarray(ks_layers.NearestUpsampling2D(2)(x))
    np.testing.assert_array_equal(y, x.repeat(2, axis=1).repeat(2, axis=2))
    assert ks_layers.NearestUpsampling2D(3).compute_output_shape((1, None, 4, 2)) == (
        1,
        None,
        12,
        2,
    )


@pytest.mark.parametrize("bad", [0, 2.0, -2])
def test_nearest_upsampling_rejects_bad_factor(bad):
    with pytest.raises(ValueError, match="factor"):
        ks_layers.NearestUpsampling2D(bad)


@pytest.mark.parametrize("size", [(4, 4), (5, 7), (6, 9), (8, 13)])
def test_pad_to_multiple_matches_numpy_static_and_dynamic(size):
    x = _images((2, *size, 3))
    layer = ks_layers.PadToMultiple(4)
    pad_h, pad_w = -size[0] % 4, -size[1] % 4
    expected = np.pad(x, [(0, 0), (0, pad_h), (0, pad_w), (0, 0)], mode="reflect")
    np.testing.assert_array_equal(np.asarray(layer(x)), expected)

    dynamic = tf.function(layer, input_signature=[tf.TensorSpec((None, None, None, 3))])
    traced = dynamic.get_concrete_function().structured_outputs
    assert traced.shape[-1] == 3, "the channel count must stay static for the next conv"
    np.testing.assert_array_equal(dynamic(x).numpy(), expected)


def test_pad_to_multiple_shape_and_config():
    layer = ks_layers.PadToMultiple(8)
    assert layer.compute_output_shape((None, 9, None, 3)) == (None, 16, None, 3)
    assert _round_trip(layer).multiple == 8
    with pytest.raises(ValueError, match="multiple"):
        ks_layers.PadToMultiple(0)


def test_crop_to_reference():
    x = _images((2, 8, 12, 3))
    reference = keras.Input((5, 7, 1))
    layer = ks_layers.CropToReference()
    assert layer.compute_output_shape(((2, 8, 12, 3), (None, 5, 7, 1))) == (2, 5, 7, 3)
    y = layer([x, np.zeros((2, 5, 7, 1), "float32")])
    np.testing.assert_array_equal(np.asarray(y), x[:, :5, :7])
    assert layer([keras.Input((8, 12, 3)), reference]).shape == (None, 5, 7, 3)


def _clip_gradient(layer, x, upstream, training):
    x = tf.constant([x])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(y * tf.constant([upstream]))
    return y.numpy()[0], tape.gradient(loss, x).numpy()[0]


def test_straight_through_clip_clips_forward_and_passes_gradients():
    layer = ks_layers.StraightThroughClip(0.0, 255.0)
    x = [-20.0, 0.0, 100.0, 255.0, 300.0]
    y, grad = _clip_gradient(layer, x, [-1.0, 2.0, -3.0, 4.0, 5.0], training=True)
    np.testing.assert_array_equal(y, [0.0, 0.0, 100.0, 255.0, 255.0])
    # Gradients that pull out-of-range pixels back pass (a tanh head's would vanish there).
    np.testing.assert_array_equal(grad, [-1.0, 2.0, -3.0, 4.0, 5.0])
    # Gradients that would push them further out are stopped, so they cannot drift away.
    _, grad = _clip_gradient(layer, x, [1.0, 2.0, -3.0, 4.0, -5.0], training=True)
    np.testing.assert_array_equal(grad, [0.0, 2.0, -3.0, 4.0, 0.0])
    # At inference it is a plain clip.
    y, _ = _clip_gradient(layer, x, [1.0] * 5, training=False)
    np.testing.assert_array_equal(y, [0.0, 0.0, 100.0, 255.0, 255.0])
    clone = ks_layers.StraightThroughClip.from_config(layer.get_config())
    assert (clone.lower, clone.upper) == (0.0, 255.0)
    with pytest.raises(ValueError, match="lower must be below upper"):
        ks_layers.StraightThroughClip(1.0, 1.0)


def _conv_pair(filters=3, kernel=9, channels=5):
    x = np.random.RandomState(1).normal(size=(2, 21, 18, channels)).astype(np.float32)
    plain = keras.layers.Conv2D(filters, kernel)
    split = ks_layers.Conv2D(filters, kernel)
    plain.build(x.shape)
    split.build(x.shape)
    split.set_weights([w + 0.1 for w in plain.get_weights()])  # a non-zero bias too
    plain.set_weights(split.get_weights())
    return x, plain, split


@pytest.mark.parametrize("training", [False, True])
def test_row_split_conv_equals_conv2d_and_its_gradients(training):
    x, plain, split = _conv_pair()
    x = tf.constant(x)
    results = []
    for layer, kwargs in ((plain, {}), (split, {"training": training})):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, **kwargs)
            loss = tf.reduce_sum(y * tf.cos(y))
        results.append([y, *tape.gradient(loss, [x, *layer.trainable_variables])])
    assert results[1][0].shape == (2, 13, 10, 3)
    for got, want in zip(results[1], results[0], strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)


def test_row_split_conv_round_trips_and_rejects_other_convolutions():
    _, _, split = _conv_pair(filters=4, kernel=3)
    copy = ks_layers.Conv2D.from_config(split.get_config())
    assert copy.get_config() == split.get_config()
    # Weights files name layers after their class: a keras Conv2D's weights load into it.
    assert keras.saving.get_registered_name(ks_layers.Conv2D) == "keras_style>Conv2D"
    assert type(split).__name__ == keras.layers.Conv2D.__name__
    with pytest.raises(ValueError, match="strides=1"):
        ks_layers.Conv2D(3, 9, strides=2)
    with pytest.raises(ValueError, match="valid"):
        ks_layers.Conv2D(3, 9, padding="same")


def _norm_with_weights(dtype="float32"):
    layer = ks_layers.InstanceNormalization(epsilon=1e-3, dtype=dtype)
    layer.build((None, None, None, 4))
    layer.set_weights([np.arange(1, 5, dtype="float32"), np.arange(4, dtype="float32") - 2])
    return layer


def test_instance_norm_in_training_is_the_same_function_and_gradient():
    """Training runs the fused per-image kernel (TensorFlow): same outputs and gradients."""
    x = tf.Variable(_images((3, 6, 5, 4)) / 10)
    layer = _norm_with_weights()
    upstream = tf.constant(np.random.default_rng(1).normal(size=(3, 6, 5, 4)), tf.float32)
    results = {}
    for training in (False, True):
        with tf.GradientTape() as tape:
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * upstream)
        results[training] = (y, *tape.gradient(loss, [x, *layer.trainable_variables]))
    for plain, fused in zip(results[False], results[True], strict=True):
        np.testing.assert_allclose(np.asarray(fused), np.asarray(plain), rtol=1e-3, atol=1e-3)


def test_instance_norm_in_bfloat16_training_stays_close_to_float32():
    x = _images((2, 8, 8, 4)) / 10
    reference = np.asarray(_norm_with_weights()(x))
    y = _norm_with_weights("mixed_bfloat16")(x, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    np.testing.assert_allclose(np.asarray(tf.cast(y, tf.float32)), reference, atol=0.1)


def test_conv2d_training_pass_equals_inference_in_both_precisions():
    x = _images((2, 12, 11, 5)) / 255
    for dtype, atol in (("float32", 1e-4), ("mixed_bfloat16", 0.05)):
        keras.utils.set_random_seed(0)
        layer = ks_layers.Conv2D(3, 9, dtype=dtype)
        inference = np.asarray(tf.cast(layer(x), tf.float32))
        training = np.asarray(tf.cast(layer(x, training=True), tf.float32))
        np.testing.assert_allclose(training, inference, atol=atol)
