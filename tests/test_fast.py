"""Tests for keras_style.fast.FastStylizer: sizes, batches, options, tiling, loading."""

import keras
import numpy as np
import pytest

from keras_style import images
from keras_style.fast import FastStylizer, _tile_spans
from keras_style.transformer_net import build_transformer_net


@pytest.fixture(scope="module")
def stylizer():
    keras.utils.set_random_seed(0)
    return FastStylizer(build_transformer_net(width=0.25))


def _photo(height, width, seed=0):
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([(x * 3) % 256, (y * 2) % 256, 128 + 100 * np.sin((x + y) / 9)], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 8, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.float32)


@pytest.mark.parametrize("size", [(5, 5), (17, 31), (33, 18), (2, 3)])
def test_any_size_keeps_its_size(stylizer, size):
    out = stylizer.stylize(_photo(*size))
    assert out.shape == (*size, 3) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 255


def test_batches_and_lists(stylizer):
    a, b = _photo(20, 24), _photo(20, 24, seed=1)
    batch = stylizer.stylize(np.stack([a, b]))
    assert batch.shape == (2, 20, 24, 3)
    listed = stylizer.stylize([a, _photo(9, 13)])
    assert [x.shape for x in listed] == [(20, 24, 3), (9, 13, 3)]
    np.testing.assert_allclose(listed[0], batch[0], atol=0.05)


def test_strength_blends_content_and_style(stylizer):
    content = _photo(16, 20)
    full = stylizer.stylize(content)
    np.testing.assert_allclose(stylizer.stylize(content, strength=0.0), content, atol=1e-4)
    half = stylizer.stylize(content, strength=0.5)
    np.testing.assert_allclose(half, (full + content) / 2, atol=0.05)


def test_preserve_color_keeps_the_content_chrominance(stylizer):
    content = _photo(16, 20)
    out = stylizer.stylize(content, preserve_color=True)
    styled_y = np.asarray(images.rgb_to_yuv(stylizer.stylize(content)))[..., 0]
    out_yuv = np.asarray(images.rgb_to_yuv(out))
    content_uv = np.asarray(images.rgb_to_yuv(content))[..., 1:]
    inside = (out.min(-1) > 1) & (out.max(-1) < 254)  # clipping moves chroma
    np.testing.assert_allclose(out_yuv[..., 1:][inside], content_uv[inside], atol=0.1)
    np.testing.assert_allclose(out_yuv[..., 0][inside], styled_y[inside], atol=0.1)


def test_max_size_shrinks(stylizer):
    assert stylizer.stylize(_photo(40, 60), max_size=30).shape == (20, 30, 3)


def test_tile_spans_cover_with_aligned_overlapping_tiles():
    for size, tile, overlap in [(352, 192, 32), (1000, 256, 64), (130, 64, 16)]:
        spans = _tile_spans(size, tile, overlap)
        assert spans[0][0] == 0 and sum(spans[-1]) == size
        assert all(start % 4 == 0 for start, _ in spans)
        for (s0, n0), (s1, _) in zip(spans, spans[1:], strict=False):
            assert s0 + n0 - s1 >= overlap
    assert _tile_spans(100, 128, 16) == [(0, 100)]


def test_tiling_matches_untiled_away_from_the_seams(stylizer):
    """Two tiles across the width; their overlap is columns 160-191."""
    content = _photo(96, 352)
    untiled = stylizer.stylize(content, tile_size=0)
    tiled = stylizer.stylize(content, tile_size=192, overlap=32)
    assert tiled.shape == untiled.shape
    diff = np.abs(tiled - untiled).mean(axis=-1)
    far = np.r_[0:100, 260:352]
    assert diff[:, far].mean() < 1.5, diff[:, far].mean()
    assert np.percentile(diff[:, far], 99) < 6
    # No visible seam: the blended overlap stays close to the untiled result too.
    assert diff[:, 150:200].mean() < 8, diff[:, 150:200].mean()


def test_tiles_share_whole_image_statistics(stylizer):
    """Per-tile instance norm would change the contrast of whole tiles."""
    content = _photo(96, 352)
    content[:, 200:] = content[:, 200:] * 0.3  # a dark right part: tile stats differ a lot
    untiled = stylizer.stylize(content, tile_size=0)
    tiled = stylizer.stylize(content, tile_size=192, overlap=32)
    assert np.abs(tiled - untiled)[:, :100].mean() < 1.5


def test_loads_a_saved_model(tmp_path, stylizer):
    path = tmp_path / "net.keras"
    stylizer.model.save(path)
    loaded = FastStylizer(path)
    content = _photo(12, 14)
    np.testing.assert_allclose(loaded.stylize(content), stylizer.stylize(content), atol=1e-3)


@pytest.mark.parametrize(
    "kwargs",
    [{"strength": 1.5}, {"strength": -0.1}, {"max_size": 2}, {"tile_size": 8}, {"overlap": 100}],
)
def test_bad_options_are_value_errors(stylizer, kwargs):
    options = {"tile_size": 64, **kwargs} if "overlap" in kwargs else kwargs
    with pytest.raises(ValueError):
        stylizer.stylize(_photo(10, 10), **options)


def test_bad_models_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="missing.keras"):
        FastStylizer(tmp_path / "missing.keras")
    with pytest.raises(ValueError, match="keras.Model"):
        FastStylizer(42)


def test_bad_image_is_a_value_error(stylizer):
    with pytest.raises(ValueError):
        stylizer.stylize(np.full((8, 8, 3), 300.0, np.float32))
