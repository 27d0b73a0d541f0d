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


def test_report_and_sheet(assets, extractor):
    photos = {f"p{i}": image_lib.center_square(make_photo(40, 48, seed=i), 32) for i in range(3)}
    paintings = {"stripes": make_painting(), "waves": make_painting(seed=5)}
    report, sheet = style_report.bundled_styles_report(
        photos, paintings, extractor, assets_dir=assets
    )
    assert list(report["styles"]) == ["stripes", "waves"] and report["photos"] == ["p0", "p1", "p2"]
    # One column per style plus the photos; one row for the paintings plus one per photo.
    assert sheet.shape == (18 + 4 * (32 + 4) + 4, 3 * (32 + 4) + 4, 3)
    figures = report["styles"]["waves"]
    assert figures["width"] == 0.25 and figures["painting"] == PAINTING
    assert len(figures["per_photo"]["style_distance"]) == 3
    # The photo's own distance is measured exactly like the evaluator does.
    stack = np.stack(list(photos.values()))
    expected = evaluate.Evaluator(extractor, [paintings["waves"]]).distances(stack, stack)
    np.testing.assert_allclose(
        figures["photo_style_distance"], expected["style_distance"].mean(), rtol=1e-4
    )
    assert figures["content_distance"] > 0 and figures["style_distance"] > 0
    assert "| waves | 0.25 |" in style_report.markdown_table(report)


def test_report_errors(assets, extractor):
    photo = {"p": image_lib.center_square(make_photo(), 32)}
    with pytest.raises(ValueError, match="No painting given for style\\(s\\): waves"):
        style_report.bundled_styles_report(
            photo, {"stripes": make_painting()}, extractor, assets_dir=assets
        )
    with pytest.raises(ValueError, match="No photos"):
        style_report.bundled_styles_report({}, {}, extractor, assets_dir=assets)
