"""Closeness metrics and the contact sheet of keras_style.quality.evaluate."""

import numpy as np
import pytest
from conftest import make_painting, make_photo

from keras_style.core import losses, vgg
from keras_style.quality import evaluate


@pytest.fixture(scope="module")
def evaluator():
    extractor = vgg.FeatureExtractor(losses.LossConfig().layers, "vgg16", weights=None)
    return evaluate.Evaluator(extractor, [make_painting(32, 32)])


@pytest.fixture
def photos():
    return np.stack([make_photo(32, 32, seed=s) for s in range(2)])


def test_identical_images_are_perfectly_close(photos):
    values = evaluate.closeness(photos, photos)
    assert np.all(np.isinf(values["psnr"]))
    np.testing.assert_allclose(values["ssim"], 1.0, atol=1e-6)


def test_distances_are_zero_against_themselves(evaluator, photos):
    painting = make_painting(32, 32)[None]
    assert evaluator.distances(painting, painting)["style_distance"][0] == pytest.approx(
        0, abs=1e-6
    )
    content = evaluator.distances(photos, photos)["content_distance"]
    np.testing.assert_allclose(content, 0.0, atol=1e-6)
    assert np.all(evaluator.distances(photos, photos)["style_distance"] > 0.05)


def test_compare_reports_every_method(evaluator, photos):
    slow = np.clip(photos + 40.0, 0, 255)
    noisy = np.clip(slow + np.random.default_rng(0).normal(0, 20, slow.shape), 0, 255)
    report = evaluate.compare(photos, slow, {"same": slow, "noisy": noisy}, evaluator, ["a", "b"])
    methods = report["methods"]
    assert set(methods) == {"photo", "slow", "same", "noisy"}
    assert methods["same"]["psnr_to_slow"] is None  # infinite: identical images
    assert methods["same"]["ssim_to_slow"] == pytest.approx(1.0, abs=1e-6)
    assert methods["same"]["style_ratio_to_slow"] == pytest.approx(1.0, rel=1e-5)
    assert methods["noisy"]["ssim_to_slow"] < 0.9 and methods["noisy"]["psnr_to_slow"] < 30
    assert methods["photo"]["content_distance"] == pytest.approx(0, abs=1e-6)
    assert [row["id"] for row in report["per_image"]] == ["a", "b"]
    ok = evaluate.check_targets(report, "same")
    assert ok["ssim_ok"] and ok["style_ok"]
    assert not evaluate.check_targets(report, "noisy", min_ssim=0.99)["ssim_ok"]


def test_contact_sheet_layout(photos):
    sheet = evaluate.contact_sheet({"photo": photos, "slow": 255 - photos}, label_height=10, gap=2)
    assert sheet.shape == (10 + 2 * (32 + 2) + 2, 2 * (32 + 2) + 2, 3)
    np.testing.assert_allclose(sheet[12:44, 2:34], np.rint(photos[0]), atol=0.51)
    with pytest.raises(ValueError, match="differ"):
        evaluate.contact_sheet({"a": photos, "b": photos[:, :16]})


def test_bad_inputs(evaluator, photos):
    with pytest.raises(ValueError, match="Shapes differ"):
        evaluate.closeness(photos, photos[:1])
    with pytest.raises(ValueError, match="differ in shape"):
        evaluator.distances(photos, photos[:, :16])
