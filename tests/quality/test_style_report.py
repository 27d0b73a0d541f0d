"""Tests for quality.style_report: the bundled-styles quality report and contact sheet."""

import keras
import numpy as np
import pytest
from conftest import make_painting, make_photo

from keras_style.core import images as image_lib
from keras_style.core import losses, vgg
from keras_style.core.transformer_net import TransformerNet
from keras_style.fast import styles
from keras_style.quality import evaluate, style_report

PAINTING = {"title": "Test Pattern", "artist": "nobody", "license": "CC0"}


@pytest.fixture(scope="module")
def extractor():
    keras.utils.set_random_seed(0)
    return vgg.FeatureExtractor(losses.LossConfig().layers, backbone="vgg16", weights=None)


@pytest.fixture
def assets(tmp_path):
    for seed, name in enumerate(("stripes", "waves")):
        keras.utils.set_random_seed(seed)
        styles.save_bundled_style(
            TransformerNet(width=0.25), name, {"painting": PAINTING}, tmp_path
        )
    return tmp_path


def test_square_photo_and_letterbox():
    photo = make_photo(30, 50)
    square = image_lib.center_square(photo, 24)
    assert square.shape == (24, 24, 3)
    cell = style_report.letterbox(make_painting(20, 40), 32)
    assert cell.shape == (32, 32, 3)
    assert np.all(cell[:4] == 255.0) and np.all(cell[-4:] == 255.0)  # padding above and below
    assert not np.all(cell[16] == 255.0)  # the painting fills the middle rows


def _relative_error(a, b):
    """Hand-written float64 relative error: mean squared difference over b's mean square."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.mean((a - b) ** 2) / (np.mean(b**2) + 1e-8)


def _gram(features):
    flat = np.asarray(features, np.float64).reshape(-1, features.shape[-1])
    return flat.T @ flat / len(flat)


def _expected_distances(extractor, outputs, photos, painting):
    """Per-image style and content distances, from VGG features with plain NumPy."""
    config = losses.LossConfig()
    reference = extractor(painting[None])
    style, content = [], []
    for output, photo in zip(outputs, photos, strict=True):
        out_f, photo_f = extractor(output[None]), extractor(photo[None])
        style.append(
            sum(
                w * _relative_error(_gram(out_f[n]), _gram(reference[n]))
                for n, w in config.style_layers.items()
            )
            / sum(config.style_layers.values())
        )
        content.append(
            sum(w * _relative_error(out_f[n], photo_f[n]) for n, w in config.content_layers.items())
            / sum(config.content_layers.values())
        )
    return np.array(style), np.array(content)


def test_report_and_sheet(assets, extractor):
    photos = {f"p{i}": image_lib.center_square(make_photo(40, 48, seed=i), 32) for i in range(3)}
    # 32 x 32 paintings: at the photos' size, so the report measures them without resizing.
    paintings = {"stripes": make_painting(32, 32), "waves": make_painting(32, 32, seed=5)}
    report, sheet = style_report.bundled_styles_report(
        photos, paintings, extractor, assets_dir=assets
    )
    assert list(report["styles"]) == ["stripes", "waves"] and report["photos"] == ["p0", "p1", "p2"]
    # One column per style plus the photos; one row for the paintings plus one per photo.
    assert sheet.shape == (18 + 4 * (32 + 4) + 4, 3 * (32 + 4) + 4, 3)
    stack = np.stack(list(photos.values()))
    for name in ("stripes", "waves"):
        figures = report["styles"][name]
        assert figures["width"] == 0.25 and figures["painting"] == PAINTING
        # The style's own network, run by Keras directly.
        net = styles.load_style(name, assets)
        outputs = np.clip(keras.ops.convert_to_numpy(net(stack, training=False)), 0, 255)
        style, content = _expected_distances(extractor, outputs, stack, paintings[name])
        photo_style, photo_content = _expected_distances(extractor, stack, stack, paintings[name])
        np.testing.assert_allclose(photo_content, 0, atol=1e-6)
        per_photo = figures["per_photo"]
        np.testing.assert_allclose(per_photo["style_distance"], style, rtol=2e-3)
        np.testing.assert_allclose(per_photo["content_distance"], content, rtol=2e-3)
        np.testing.assert_allclose(per_photo["photo_style_distance"], photo_style, rtol=2e-3)
        np.testing.assert_allclose(figures["style_distance"], style.mean(), rtol=2e-3)
        np.testing.assert_allclose(figures["content_distance"], content.mean(), rtol=2e-3)
        np.testing.assert_allclose(figures["photo_style_distance"], photo_style.mean(), rtol=2e-3)
        assert figures["content_distance"] > 0.01  # the networks do change the photos
    # And exactly like the evaluator measures (the report uses its scale-free terms).
    expected = evaluate.Evaluator(extractor, [paintings["waves"]]).distances(stack, stack)
    np.testing.assert_allclose(
        report["styles"]["waves"]["photo_style_distance"],
        expected["style_distance"].mean(),
        rtol=1e-4,
    )
    stripes, waves = report["styles"]["stripes"], report["styles"]["waves"]
    assert stripes["photo_style_distance"] != waves["photo_style_distance"]
    assert "| waves | 0.25 |" in style_report.markdown_table(report)


def test_report_errors(assets, extractor):
    photo = {"p": image_lib.center_square(make_photo(), 32)}
    with pytest.raises(ValueError, match="No painting given for style\\(s\\): waves"):
        style_report.bundled_styles_report(
            photo, {"stripes": make_painting()}, extractor, assets_dir=assets
        )
    with pytest.raises(ValueError, match="No photos"):
        style_report.bundled_styles_report({}, {}, extractor, assets_dir=assets)


def test_full_resolution_figures_stylize_whole_photos_then_measure_small(assets, extractor):
    from keras_style.fast.stylizer import FastStylizer

    # Photos of different sizes and shapes, larger than where they are measured.
    photos = {"wide": make_photo(48, 80, seed=1), "tall": make_photo(72, 40, seed=2)}
    painting = make_painting(60, 60)
    stylizer = FastStylizer(styles.load_style("waves", assets), precision="float32")
    figures, kept = style_report.full_resolution_figures(
        stylizer, photos, painting, extractor, measure_side=32, keep=("tall",)
    )
    assert list(kept) == ["tall"] and kept["tall"].shape == (72, 40, 3)  # full resolution
    np.testing.assert_allclose(kept["tall"], stylizer.stylize(photos["tall"]), atol=1e-3)
    assert figures["per_photo"]["photos"] == ["wide", "tall"]
    for i, name in enumerate(photos):
        # The output made at full size, then both resized to a 32 px long side.
        output = style_report.measured(stylizer.stylize(photos[name]), 32)
        photo = style_report.measured(photos[name], 32)
        assert max(output.shape[:2]) == 32 and output.shape == photo.shape
        small_painting = style_report.measured(painting, 32)
        style, content = _expected_distances(extractor, output[None], photo[None], small_painting)
        photo_style, _ = _expected_distances(extractor, photo[None], photo[None], small_painting)
        per_photo = figures["per_photo"]
        assert per_photo["style_distance"][i] == pytest.approx(style[0], rel=2e-3)
        assert per_photo["content_distance"][i] == pytest.approx(content[0], rel=2e-3)
        assert per_photo["photo_style_distance"][i] == pytest.approx(photo_style[0], rel=2e-3)
    assert figures["style_distance"] == pytest.approx(np.mean(per_photo["style_distance"]))


def test_row_sheet_keeps_each_image_at_its_own_size():
    a, b, c = make_photo(30, 50), make_photo(20, 20, seed=3), make_photo(44, 10, seed=4)
    sheet = style_report.row_sheet([[("photo", a), ("net", b)], [("photo", c)]], gap=8)
    # Widest row: 8 + 50 + 8 + 20 + 8; rows: 18 + 30 + 8 and 18 + 44 + 8, plus the top gap.
    assert sheet.shape == (8 + 56 + 70, 94, 3)
    np.testing.assert_array_equal(sheet[8 + 18 : 8 + 18 + 30, 8 : 8 + 50], image_lib.to_uint8(a))
    top = 8 + 56 + 18
    np.testing.assert_array_equal(sheet[top : top + 44, 8:18], image_lib.to_uint8(c))
    with pytest.raises(ValueError, match="at least one image"):
        style_report.row_sheet([[("photo", a)], []])
