"""Scale-free perceptual losses of keras_style.core.losses."""

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_style.core import losses, vgg


def _np(x):
    return ops.convert_to_numpy(x)


def test_gram_matrix_known_values():
    features = np.zeros((1, 2, 1, 2), np.float32)
    features[0, 0, 0] = [1, 2]
    features[0, 1, 0] = [3, 4]
    expected = np.array([[1 + 9, 2 + 12], [2 + 12, 4 + 16]]) / 2.0
    np.testing.assert_allclose(_np(losses.gram_matrix(features))[0], expected)


def test_relative_error_is_scale_free():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(2, 4, 4, 8)).astype(np.float32)
    pred = target + rng.normal(size=target.shape).astype(np.float32) * 0.1
    small = _np(losses.relative_error(pred, target))
    large = _np(losses.relative_error(pred * 1000, target * 1000))
    np.testing.assert_allclose(small, large, rtol=1e-4)
    np.testing.assert_allclose(_np(losses.relative_error(target, target)), 0.0, atol=1e-7)
    np.testing.assert_allclose(_np(losses.relative_error(target * 0, target)), 1.0, rtol=1e-4)


def test_total_variation():
    flat = np.full((1, 8, 8, 3), 100.0, np.float32)
    assert float(_np(losses.total_variation(flat))[0]) == 0.0
    stripes = flat.copy()
    stripes[:, :, ::2] = 0.0
    assert float(_np(losses.total_variation(stripes))[0]) > 0.05


@pytest.mark.parametrize(
    "kwargs",
    [
        {"style_layers": {}},
        {"content_layers": {"block4_conv2": -1.0}},
        {"style_weight": -1.0},
        {"tv_weight": -0.1},
        {"tone_weight": -1.0},
        {"tone_scale": 0},
        {"tone_scale": 2.5},
    ],
)
def test_loss_config_validation(kwargs):
    with pytest.raises(ValueError):
        losses.LossConfig(**kwargs)


@pytest.fixture(scope="module")
def perceptual():
    extractor = vgg.FeatureExtractor(losses.LossConfig().layers, "vgg16", weights=None)
    return losses.PerceptualLoss(extractor)


def test_identical_images_have_zero_content_and_style_loss(perceptual, photo):
    batch = photo[None]
    targets = perceptual.content_targets(batch)
    grams = perceptual.style_targets([photo])
    total, parts = perceptual(batch, targets, grams)
    assert set(parts) == {"content_loss", "style_loss", "tv_loss"}
    assert float(parts["content_loss"]) < 1e-6 and float(parts["style_loss"]) < 1e-6
    assert float(total) == pytest.approx(float(parts["tv_loss"]) * perceptual.config.tv_weight)


def test_losses_grow_with_distance(perceptual, photo, painting):
    batch = photo[None]
    targets = perceptual.content_targets(batch)
    grams = perceptual.style_targets([photo])
    near = perceptual.parts(np.clip(batch + 5, 0, 255), targets, grams)
    far = perceptual.parts(painting[None, :40, :48], targets, grams)
    assert float(near["content_loss"][0]) < float(far["content_loss"][0])
    assert float(near["style_loss"][0]) < float(far["style_loss"][0])


def test_tone_map_is_block_mean_luminance():
    image = np.zeros((1, 8, 12, 3), np.float32)
    image[:, :4, :4] = 255.0  # one white block
    image[:, 4:, 4:8] = [255.0, 0.0, 0.0]  # one red block
    tones = _np(losses.tone_map(image, 4))
    assert tones.shape == (1, 2, 3, 1)
    np.testing.assert_allclose(tones[0, :, :, 0], [[1.0, 0, 0], [0, 0.299, 0]], atol=1e-6)
    assert _np(losses.tone_map(image[:, :7, :7], 4)).shape == (1, 2, 2, 1)  # edge blocks kept


def test_tone_term_penalises_inverted_tones_not_texture(photo):
    extractor = vgg.FeatureExtractor(losses.LossConfig().layers, "vgg16", weights=None)
    loss = losses.PerceptualLoss(extractor, losses.LossConfig(tone_weight=2.0, tone_scale=8))
    batch = photo[None]
    targets = loss.content_targets(batch)
    grams = loss.style_targets([photo])
    rng = np.random.default_rng(0)
    texture = np.clip(batch + rng.normal(0, 20, batch.shape), 0, 255).astype(np.float32)
    textured = loss.parts(texture, targets, grams)["tone_loss"]
    inverted = loss.parts(255.0 - batch, targets, grams)["tone_loss"]
    assert float(textured[0]) < 0.01 < float(inverted[0])
    total, parts = loss(255.0 - batch, targets, grams)
    without = losses.PerceptualLoss(extractor)(255.0 - batch, targets, grams)[0]
    assert float(total) == pytest.approx(float(without) + 2.0 * float(parts["tone_loss"]), 1e-4)
    assert "tone_loss" not in losses.PerceptualLoss(extractor).parts(batch, targets, grams)


def test_style_targets_blend(perceptual, photo, painting):
    single = perceptual.style_targets([painting])
    doubled = perceptual.style_targets([painting, painting], [0.3, 0.7])
    only_first = perceptual.style_targets([painting, photo], [1.0, 0.0])
    for name in single:
        np.testing.assert_allclose(_np(doubled[name]), _np(single[name]), rtol=1e-5)
        np.testing.assert_allclose(_np(only_first[name]), _np(single[name]), rtol=1e-5)
    with pytest.raises(ValueError, match="style weights"):
        perceptual.style_targets([painting], [0.5, 0.5])
    with pytest.raises(ValueError, match="non-negative"):
        perceptual.style_targets([painting, photo], [-1.0, 2.0])


def test_missing_layers_are_reported():
    extractor = vgg.FeatureExtractor(["block1_conv1"], "vgg16", weights=None)
    with pytest.raises(ValueError, match="does not expose"):
        losses.PerceptualLoss(extractor)


def test_gram_matrix_matches_the_einsum_definition():
    features = np.random.RandomState(3).normal(size=(3, 5, 7, 4)).astype(np.float32)
    expected = np.einsum("nhwc,nhwd->ncd", features, features) / (5 * 7)
    np.testing.assert_allclose(
        ops.convert_to_numpy(losses.gram_matrix(features)), expected, rtol=1e-5, atol=1e-6
    )


def test_ssim_matches_tf_image_ssim():
    """The loss term and the quality reports measure the same SSIM."""
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (2, 24, 20, 3)).astype("float32")
    b = np.clip(a + rng.normal(0, 40, a.shape), 0, 255).astype("float32")
    expected = tf.image.ssim(tf.constant(a), tf.constant(b), max_val=255.0).numpy()
    np.testing.assert_allclose(_np(losses.ssim(a, b)), expected, atol=1e-5)
    np.testing.assert_allclose(_np(losses.ssim(a, a)), [1.0, 1.0], atol=1e-6)


def test_ssim_gradient_moves_towards_the_reference():
    rng = np.random.default_rng(1)
    target = rng.uniform(0, 255, (1, 16, 16, 3)).astype("float32")
    image = tf.Variable(np.full_like(target, 128.0))
    with tf.GradientTape() as tape:
        value = losses.ssim(image, target)[0]
    step = image + 1e4 * tape.gradient(value, image)
    assert float(losses.ssim(step, target)[0]) > float(value)


def test_gram_matrix_gradient_is_features_times_symmetrised_upstream():
    rng = np.random.default_rng(4)
    features = tf.Variable(rng.normal(size=(2, 3, 5, 4)).astype(np.float32))
    weights = rng.normal(size=(2, 4, 4)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.gram_matrix(features) * weights)
    flat = features.numpy().reshape(2, 15, 4)
    expected = np.matmul(flat, weights + weights.transpose(0, 2, 1)) / 15
    np.testing.assert_allclose(
        tape.gradient(loss, features).numpy().reshape(2, 15, 4), expected, rtol=1e-5, atol=1e-5
    )


def test_gram_matrix_in_bfloat16_is_float32_and_close():
    features = np.random.default_rng(5).uniform(0, 3, (2, 16, 16, 8)).astype(np.float32)
    exact = _np(losses.gram_matrix(features))
    low = losses.gram_matrix(tf.cast(features, tf.bfloat16), in_feature_dtype=True)
    assert low.dtype == tf.float32
    # bfloat16 inputs and output (8 significant bits), float32 accumulation.
    np.testing.assert_allclose(_np(low), exact, rtol=2e-2)


def test_low_precision_grams_keep_the_loss_close():
    extractor = vgg.FeatureExtractor(
        ["block1_conv1", "block2_conv1"], "vgg16", weights=None, precision="bfloat16"
    )
    config = losses.LossConfig(
        content_layers={"block2_conv1": 1.0}, style_layers={"block1_conv1": 1.0}
    )
    rng = np.random.default_rng(6)
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    style = [rng.uniform(0, 255, (32, 32, 3)).astype(np.float32)]
    parts = {}
    for low in (False, True):
        loss = losses.PerceptualLoss(extractor, config, low_precision_grams=low)
        targets = loss.content_targets(images[::-1].copy())
        parts[low] = {
            k: float(v) for k, v in loss(images, targets, loss.style_targets(style))[1].items()
        }
    for name in parts[False]:
        assert parts[True][name] == pytest.approx(parts[False][name], rel=0.02)
