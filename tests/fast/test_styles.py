"""Tests for keras_style.fast.styles: the bundled-style format, lookup and model resolution."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_style.core.transformer_net import TransformerNet
from keras_style.fast import styles

REPO = Path(__file__).resolve().parents[2]

#: The styles the package ships (issue 6).
BUNDLED = ("great_wave", "starry_night", "udnie", "woman_with_hat_matisse")

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


def test_clip_head_round_trip(tmp_path):
    keras.utils.set_random_seed(1)
    clip = TransformerNet(width=0.25, head="clip")
    styles.save_bundled_style(clip, "clipped", CARD, assets_dir=tmp_path)
    assert styles.style_card("clipped", tmp_path)["head"] == "clip"
    loaded = styles.load_style("clipped", assets_dir=tmp_path)
    assert loaded.head == "clip"
    np.testing.assert_allclose(
        loaded.predict_on_batch(_batch()), clip.predict_on_batch(_batch()), atol=2.0
    )


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


PAINTING = {"title": "Test Pattern", "artist": "nobody", "license": "CC0", "year": "2026"}


@pytest.fixture
def trained(tmp_path, net):
    """A work dir as `training.train` leaves it: model.keras beside config.json."""
    workdir = tmp_path / "runs" / "tiny"
    workdir.mkdir(parents=True)
    net.save(workdir / "model.keras")
    (workdir / "config.json").write_text(json.dumps({"style_image": "wave.jpg", "steps": 7}))
    runs = [{"from_step": 0, "to_step": 7, "wall_s": 3.5, "command": "python -m training.train"}]
    (workdir / "runs.json").write_text(json.dumps(runs))
    return workdir / "model.keras"


def test_bundle_trained_model_records_training(trained, tmp_path, net):
    folder = tmp_path / "styles"
    figures = {"style_distance": 0.09, "content_distance": 0.5}
    styles.bundle_trained_model(trained, "tiny", PAINTING, assets_dir=folder, figures=figures)
    card = styles.style_card("tiny", assets_dir=folder)
    assert card["painting"] == PAINTING
    assert card["training"] == {
        "config": {"style_image": "wave.jpg", "steps": 7},
        "runs": [
            {"from_step": 0, "to_step": 7, "wall_s": 3.5, "command": "python -m training.train"}
        ],
        "model_file": "model.keras",
    }
    assert card["figures"] == figures
    restored = styles.load_style("tiny", assets_dir=folder)
    np.testing.assert_allclose(
        restored.predict_on_batch(_batch()), net.predict_on_batch(_batch()), atol=2.0
    )


def test_refined_style_card_keeps_the_lineage(trained, tmp_path):
    folder = tmp_path / "styles"
    styles.bundle_trained_model(trained, "tiny", PAINTING, assets_dir=folder)
    first = styles.style_card("tiny", assets_dir=folder)["training"]
    config = trained.parent / "config.json"
    config.write_text(json.dumps({"style_image": "wave.jpg", "steps": 3, "init_from": "tiny"}))
    styles.bundle_trained_model(trained, "tiny", PAINTING, assets_dir=folder)
    second = styles.style_card("tiny", assets_dir=folder)["training"]
    assert second["config"]["init_from"] == "tiny"
    assert second["started_from"] == first
    # A job that took over from a checkpoint of that run records the run, then its start.
    checkpoint = trained.parent / "checkpoints" / "ckpt-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "net.weights.h5").write_bytes(b"weights")
    took_over = tmp_path / "cosine" / "model.keras"
    took_over.parent.mkdir()
    took_over.write_bytes(trained.read_bytes())
    (took_over.parent / "config.json").write_text(json.dumps({"init_from": str(checkpoint)}))
    styles.bundle_trained_model(took_over, "tiny", PAINTING, assets_dir=folder)
    third = styles.style_card("tiny", assets_dir=folder)["training"]
    assert third["runs"] is None and third["started_from"]["checkpoint"] == str(checkpoint)
    assert third["started_from"]["config"]["init_from"] == "tiny"
    assert third["started_from"]["started_from"] == second


@pytest.mark.parametrize(
    "painting, source, match",
    [
        ({"title": "x", "artist": "y"}, None, "lacks license"),
        (PAINTING, "missing.keras", "not found"),
    ],
)
def test_bundle_trained_model_errors(trained, tmp_path, painting, source, match):
    folder = tmp_path / "styles"
    with pytest.raises(ValueError, match=match):
        styles.bundle_trained_model(source or trained, "tiny", painting, assets_dir=folder)
    assert styles.list_styles(folder) == []


def test_bundle_binary(trained, tmp_path):
    folder = tmp_path / "styles"
    command = [sys.executable, "-m", "export.bundle_style", f"--model={trained}", "--name=tiny"]
    command += ["--title=Test Pattern", "--artist=nobody", "--year=2026", f"--assets_dir={folder}"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Style 'tiny' installed" in done.stdout
    assert styles.style_card("tiny", folder)["painting"]["license"] == "public domain"
    report = tmp_path / "report.json"
    per_photo = {"style_distance": [0.1, 0.08]}
    report.write_text(
        json.dumps(
            {
                "photos_dir": "eval",
                "measure_side": 384,
                "styles": {"tiny": {"style_distance": 0.09, "per_photo": per_photo}},
            }
        )
    )
    with_report = subprocess.run(
        [*command, f"--report={report}"], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert with_report.returncode == 0, with_report.stderr
    card = styles.style_card("tiny", folder)
    assert card["figures"] == {"style_distance": 0.09, "photos_dir": "eval", "measure_side": 384}
    missing = subprocess.run(
        [*command[:4], "--name=other", *command[5:], f"--report={report}"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert missing.returncode == 2 and "no figures for style 'other'" in missing.stderr
    bad = subprocess.run(
        [*command[:4], "--name=Bad Name", *command[5:]], capture_output=True, text=True, cwd=REPO
    )
    assert bad.returncode == 2 and "lowercase" in bad.stderr.splitlines()[-1]


def test_bundled_styles_ship_and_work():
    """The styles installed in the package: the four paintings, each loads and stylizes."""
    assert set(styles.list_styles()) >= set(BUNDLED)
    photo = _batch()[:1]
    for name in styles.list_styles():
        card = styles.style_card(name)
        assert card["painting"]["title"] and card["training"]["config"]["steps"] > 0
        weights, card_file = styles._paths(name, None)
        assert weights.stat().st_size + card_file.stat().st_size <= styles.MAX_STYLE_BYTES
        out = styles.load_style(name).predict_on_batch(photo)
        assert out.shape == photo.shape and out.min() >= 0 and out.max() <= 255
        assert np.abs(out - photo).mean() > 10, f"style {name} barely changes the image"
