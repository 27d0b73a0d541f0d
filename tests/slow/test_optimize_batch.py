"""`GatysStylizer.stylize_batch`: several same-sized photos in one slow-method run."""

import numpy as np
import pytest
from conftest import make_photo

from keras_style.core import losses, vgg
from keras_style.slow import optimize


@pytest.fixture(scope="module")
def extractor():
    return vgg.FeatureExtractor(losses.LossConfig().layers, "vgg16", weights=None)


@pytest.fixture
def stylizer(extractor):
    # A fresh compiled step per test: each test sees few input shapes (with
    # `reduce_retracing`, Adam after three distinct shapes hits a TF
    # relaxed-shape gradient error, reported to the slow path).
    return optimize.GatysStylizer(extractor)


def _config(**options):
    return optimize.OptimizeConfig(**{"size": 40, "iterations": 4, "multiscale": False, **options})


def test_batch_of_one_equals_stylize(stylizer, photo, painting):
    config = _config(size=48)
    single, _ = stylizer.stylize(photo, [painting], config=config, verbose=0)
    batch, parts = stylizer.stylize_batch(photo[None], [painting], config=config, verbose=0)
    assert batch.shape == (1, *single.shape)
    np.testing.assert_allclose(batch[0], single, atol=1e-2)
    assert set(parts) == {"loss", "content_loss", "style_loss", "tv_loss"}


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_batch_stylizes_every_image(stylizer, painting, optimizer):
    photos = np.stack([make_photo(40, 40, seed=s) for s in range(3)])
    trace = []
    out, _ = stylizer.stylize_batch(
        photos,
        [painting],
        config=_config(optimizer=optimizer),
        verbose=0,
        callback=lambda step, image, parts: trace.append(parts["loss"]),
        callback_every=1,
    )
    assert out.shape == photos.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    assert trace[-1] < trace[0]
    for i in range(3):  # each output changed, and stays closest to its own photo
        distances = np.abs(out[i] - photos).mean(axis=(1, 2, 3))
        assert distances[i] > 0.5 and np.argmin(distances) == i


def test_adam_batch_matches_one_at_a_time(stylizer, painting):
    """Samples are independent: with Adam (per-pixel steps) batching changes nothing."""
    photos = np.stack([make_photo(40, 40, seed=s) for s in range(2)])
    config = _config(optimizer="adam")
    batch, _ = stylizer.stylize_batch(photos, [painting], config=config, verbose=0)
    for i in range(2):
        single, _ = stylizer.stylize(photos[i], [painting], config=config, verbose=0)
        np.testing.assert_allclose(batch[i], single, atol=0.05)


def test_list_input_and_non_square_size(stylizer, painting):
    photos = [make_photo(48, 64, seed=s) for s in range(2)]
    config = _config(size=64, iterations=2)
    out, _ = stylizer.stylize_batch(photos, [painting], config=config, verbose=0)
    assert out.shape == (2, 48, 64, 3)


@pytest.mark.parametrize(
    "contents, message",
    [
        (np.zeros((0, 8, 8, 3)), "non-empty"),
        (np.zeros((8, 8, 3)), "non-empty"),
        ([np.zeros((8, 8, 3)), np.zeros((9, 8, 3))], "one size"),
    ],
)
def test_bad_batches(stylizer, painting, contents, message):
    with pytest.raises(ValueError, match=message):
        stylizer.stylize_batch(contents, [painting], config=_config(), verbose=0)
