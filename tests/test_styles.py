"""Tests for keras_style.styles: the bundled-style format, lookup and model resolution."""

import json

import keras
import numpy as np
import pytest

from keras_style import styles
from keras_style.transformer_net import TransformerNet

CARD = {
    "painting": {"title": "Test Pattern", "artist": "nobody", "license": "CC0"},
    "training": {"command": "python -m training.train --style test.jpg"},
    "metrics": {"style_loss": 1.5},
}


@pytest.fixture(scope="module")
def net():
    keras.utils.set_random_seed(0)
    return TransformerNet(width=0.25)


@pytest.fixture
def assets(tmp_path, net):
    folder = tmp_path / "styles"
    styles.save_bundled_style(net, "tiny_wave", CARD, assets_dir=folder)
    styles.save_bundled_style(net, "another", CARD, assets_dir=folder)
    return folder


def _batch(seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (2, 24, 28, 3)).astype("float32")


def test_round_trip_matches_float16_weights(assets, net):
    loaded = styles.load_style("tiny_wave", assets_dir=assets)
    assert isinstance(loaded, TransformerNet) and loaded.width == 0.25
    for original, restored in zip(net.weights, loaded.weights, strict=True):
        assert restored.dtype == "float32"
        expected = keras.ops.convert_to_numpy(original).astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored), expected)
    # Half-precision weights move the [0, 255] output by well under 1%.
    difference = np.abs(loaded.predict_on_batch(_batch()) - net.predict_on_batch(_batch()))
    assert difference.max() < 2.0


def test_list_and_card(assets):
    assert styles.list_styles(assets) == ["another", "tiny_wave"]
    card = styles.style_card("tiny_wave", assets_dir=assets)
    assert card["name"] == "tiny_wave" and card["width"] == 0.25
    assert card["painting"] == CARD["painting"] and card["metrics"] == CARD["metrics"]


def test_half_saved_style_is_not_listed(assets):
    (assets / "tiny_wave.json").unlink()  # weights without a card: interrupted save
    (assets / "orphan.json").write_text(json.dumps({"width": 0.25}))  # card without weights
    assert styles.list_styles(assets) == ["another"]


def test_missing_folder_lists_nothing(tmp_path):
    assert styles.list_styles(tmp_path / "nowhere") == []


def test_unknown_name_lists_available(assets):
    with pytest.raises(ValueError, match="'monet'.*available styles: another, tiny_wave"):
        styles.load_style("monet", assets_dir=assets)
    with pytest.raises(ValueError, match="none are installed"):
        styles.style_card("monet", assets_dir=assets / "empty")


def test_size_limit_enforced_and_nothing_written(tmp_path, net):
    folder = tmp_path / "styles"
    with pytest.raises(ValueError, match="limit"):
        styles.save_bundled_style(net, "big", CARD, assets_dir=folder, max_bytes=100_000)
    assert list(folder.iterdir()) == []


def test_full_width_network_fits_the_limit(tmp_path):
    path = styles.save_bundled_style(TransformerNet(width=1.0), "full", CARD, tmp_path)
    assert path.stat().st_size + (tmp_path / "full.json").stat().st_size <= styles.MAX_STYLE_BYTES


@pytest.mark.parametrize(
    "name, model, card, match",
    [
        ("Bad Name", None, CARD, "lowercase"),
        ("../escape", None, CARD, "lowercase"),
        ("ok", "not a model", CARD, "TransformerNet"),
        ("ok", None, {"metrics": {}}, "painting"),
        ("ok", None, {"painting": object()}, "JSON"),
    ],
)
def test_save_rejects_bad_arguments(tmp_path, net, name, model, card, match):
    with pytest.raises(ValueError, match=match):
        styles.save_bundled_style(model or net, name, card, assets_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_damaged_weights_raise_value_error(assets):
    (assets / "tiny_wave.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="damaged"):
        styles.load_style("tiny_wave", assets_dir=assets)


def test_resolve_model(assets, net, tmp_path):
    assert styles.resolve_model(net) is net
    assert isinstance(styles.resolve_model("tiny_wave", assets_dir=assets), TransformerNet)
    path = tmp_path / "model.keras"
    net.save(path)
    for source in (path, str(path)):
        loaded = styles.resolve_model(source, assets_dir=assets)
        np.testing.assert_allclose(
            loaded.predict_on_batch(_batch()), net.predict_on_batch(_batch()), atol=1e-3
        )


@pytest.mark.parametrize("source", ["monet", "missing/model.keras", 3])
def test_resolve_model_errors(assets, source):
    with pytest.raises(ValueError, match="available styles: another, tiny_wave|Expected"):
        styles.resolve_model(source, assets_dir=assets)


def test_resolve_model_rejects_non_keras_files(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_text("not a zip")
    with pytest.raises(ValueError, match="Cannot load"):
        styles.resolve_model(bad)
    other = tmp_path / "model.txt"
    other.write_text("hello")
    with pytest.raises(ValueError, match="not a Keras model file"):
        styles.resolve_model(other)
