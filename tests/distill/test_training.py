"""Distillation end to end: stylized dataset -> pair batches -> trainer -> held-out evaluation."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_photo
from PIL import Image

from keras_style.distill import dataset as sd
from keras_style.distill import training as distill
from keras_style.distill.sources import FolderSource
from keras_style.quality import evaluate
from keras_style.train.config import TrainConfig

SIZE = 32


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, make_slow_recipe):
    """A 4-pair training set and a 2-pair held-out set from different photos, same recipe."""
    root = tmp_path_factory.mktemp("distill")
    photos = root / "photos"
    photos.mkdir()
    for i in range(6):
        Image.fromarray(make_photo(40, 48, seed=i).astype(np.uint8)).save(photos / f"p{i}.png")
    recipe = make_slow_recipe(root, SIZE)
    train, held_out = root / "train", root / "held_out"
    sd.write_stylized_dataset(train, FolderSource(photos, skip=2), recipe, verbose=0)
    sd.write_stylized_dataset(held_out, FolderSource(photos, max_examples=2), recipe, verbose=0)
    return train, held_out


def test_joint_augment_keeps_pairs_aligned():
    content = tf.constant(make_photo(32, 32))
    target = 255.0 - content
    crops = []
    for seed in range(4):
        c, t = distill.joint_augment(content, target, 20, key=tf.constant([seed, 7]))
        assert c.shape == (20, 20, 3)
        np.testing.assert_allclose(t.numpy(), 255.0 - c.numpy(), atol=1e-4)
        crops.append(c.numpy())
    again, _ = distill.joint_augment(content, target, 20, key=tf.constant([3, 7]))
    np.testing.assert_array_equal(again.numpy(), crops[3])  # the key decides the crop
    assert any(not np.array_equal(crops[0], c) for c in crops[1:])


def test_joint_augment_grid_offsets_and_no_flip():
    rows, cols = np.meshgrid(np.arange(64.0), np.arange(64.0), indexing="ij")
    content = tf.constant(np.stack([rows, cols, rows], axis=-1), tf.float32)
    offsets = set()
    for seed in range(12):
        key = tf.constant([seed, 0])
        c, t = distill.joint_augment(content, content, 32, key, flip=False, crop_step=16)
        top, left = int(c[0, 0, 0]), int(c[0, 0, 1])
        assert top % 16 == 0 and left % 16 == 0 and c[0, 1, 1] == left + 1  # never mirrored
        np.testing.assert_array_equal(c.numpy(), t.numpy())
        offsets.add((top, left))
    assert len(offsets) > 3  # still random, on the grid (0, 16, 32)
    with pytest.raises(ValueError, match="pair_crop_step"):
        TrainConfig(pair_crop_step=0)


def test_pair_dataset(datasets):
    train, _ = datasets
    batches, [card] = distill.pair_dataset(train, 24, 3, seed=0)
    content, target = next(iter(batches))
    assert content.shape == target.shape == (3, 24, 24, 3)
    assert card["num_examples"] == 4
    plain, _ = distill.pair_dataset(train, SIZE, 4, augment=False, repeat=False)
    [(content, target)] = list(plain)
    assert sorted(np.asarray(content).mean(axis=(1, 2, 3)).round(2)) == sorted(
        sd.load_pairs(train)[1].mean(axis=(1, 2, 3)).round(2)
    )
    with pytest.raises(ValueError, match="crop_size"):
        distill.pair_dataset(train, SIZE + 1, 2)


def test_pair_dataset_of_several_datasets(datasets, tmp_path):
    train, held_out = datasets
    plain, cards = distill.pair_dataset([train, held_out], SIZE, 6, augment=False, repeat=False)
    assert [c["num_examples"] for c in cards] == [4, 2]
    [(content, _)] = list(plain)  # every pair of both folders, once
    expected = np.concatenate([sd.load_pairs(train)[1], sd.load_pairs(held_out)[1]])
    assert sorted(np.asarray(content).mean(axis=(1, 2, 3)).round(2)) == sorted(
        expected.mean(axis=(1, 2, 3)).round(2)
    )
    with pytest.raises(ValueError, match="same photos"):
        distill.pair_dataset([train, train], SIZE, 2)
    other = tmp_path / "other"
    other.mkdir()
    for path in held_out.iterdir():
        (other / path.name).write_bytes(path.read_bytes())
    card = sd.read_card(other)
    card["recipe"]["optimize"]["iterations"] += 1
    (other / sd.CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(ValueError, match="different recipe"):
        distill.pair_dataset([train, other], SIZE, 2)


def _stream(batches, count):
    return [np.asarray(c) for c, _ in batches.take(count)]


def test_pair_dataset_resumes_with_a_fresh_repeatable_stream(datasets):
    """start_batch > 0 (a resumed run) neither replays the first run's stream nor is random."""
    train, _ = datasets
    first = _stream(distill.pair_dataset(train, 24, 2, seed=3)[0], 3)
    resumed = _stream(distill.pair_dataset(train, 24, 2, seed=3, start_batch=5)[0], 3)
    again = _stream(distill.pair_dataset(train, 24, 2, seed=3, start_batch=5)[0], 3)
    for a, b in zip(resumed, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, resumed, strict=True))
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="start_batch"):
            distill.pair_dataset(train, 24, 2, start_batch=bad)
    with pytest.raises(ValueError, match="repeated"):
        distill.pair_dataset(train, 24, 2, repeat=False, start_batch=2)


@pytest.mark.slow
def test_tiny_distillation_end_to_end(tmp_path, datasets, vgg16_weights_file, monkeypatch):
    train, held_out = datasets
    starts = []
    pair_dataset = distill.pair_dataset

    def recording(*args, start_batch=0, **kwargs):
        starts.append(start_batch)
        return pair_dataset(*args, start_batch=start_batch, **kwargs)

    monkeypatch.setattr(distill, "pair_dataset", recording)
    config = TrainConfig(
        workdir=str(tmp_path / "run"),
        loss="distill",
        image_size=24,
        batch_size=2,
        steps=3,
        backbone="vgg16",
        vgg_weights=str(vgg16_weights_file),
        width=0.25,
        head="residual",
        jit_compile=False,
        checkpoint_every=2,
        summary_every=1,
        sample_every=0,
        num_samples=1,
        seed=0,
    )
    summary = distill.distill(config, train, verbose=0)
    assert summary["step"] == 3 and os.path.isfile(summary["model_path"])
    saved = json.loads((tmp_path / "run" / "distill_dataset.json").read_text())
    assert saved["cards"] == [sd.read_card(train)]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["loss"] == "distill"
    again = distill.distill(config.replace(steps=4), train, verbose=0)
    assert again["initial_step"] == 3 and again["step"] == 4  # resumed, not restarted
    assert starts == [0, 3]  # the resumed run's pairs are keyed by its first step
    # The hybrid recipe: the painting's style term, the painting taken from the dataset card.
    hybrid_config = config.replace(workdir=str(tmp_path / "hybrid"), painting_style_weight=2.0)
    hybrid = distill.distill(hybrid_config, train, verbose=0)
    saved_config = json.loads((tmp_path / "hybrid" / "config.json").read_text())
    assert saved_config["style_image"] == sd.read_card(train)["recipe"]["style_files"][0]
    assert saved_config["painting_style_weight"] == 2.0
    assert "painting_style_loss" in hybrid["history"]

    report, columns = evaluate.evaluate_on_dataset(
        held_out, {"distilled": summary["model_path"]}, train_dirs=[train]
    )
    assert report["num_images"] == 2 and set(columns) == {"photo", "slow", "distilled"}
    # The figures, recomputed from the held-out pairs and the saved network directly.
    import keras

    from keras_style.core import metrics

    _, photos, slow = sd.load_pairs(held_out)
    net = keras.saving.load_model(summary["model_path"])
    outputs = np.clip(keras.ops.convert_to_numpy(net(photos, training=False)), 0, 255)
    np.testing.assert_allclose(columns["distilled"], outputs, atol=1e-3)
    np.testing.assert_array_equal(columns["slow"], slow)
    methods = report["methods"]
    for name, images in (("distilled", outputs), ("photo", photos)):
        ssim = [metrics.ssim(a, b) for a, b in zip(images, slow, strict=True)]
        psnr = [metrics.psnr(a, b) for a, b in zip(images, slow, strict=True)]
        assert methods[name]["ssim_to_slow"] == pytest.approx(np.mean(ssim), abs=1e-4)
        assert methods[name]["psnr_to_slow"] == pytest.approx(np.mean(psnr), abs=1e-3)
    assert methods["slow"]["style_distance"] > 0
    assert methods["slow"]["style_distance"] < methods["photo"]["style_distance"]
    assert set(report["targets"]["distilled"]) >= {"ssim_ok", "style_ok"}
    with pytest.raises(ValueError, match="used in training"):
        evaluate.evaluate_on_dataset(train, {"d": summary["model_path"]}, train_dirs=[train])


@pytest.mark.slow
def test_binaries_fail_cleanly_on_bad_input(tmp_path):
    for module, args in [
        ("training.make_stylized_dataset", ["--style=/missing.jpg", f"--output_dir={tmp_path}"]),
        ("training.distill", [f"--dataset_dir={tmp_path}", f"--workdir={tmp_path}/w"]),
        ("training.evaluate", [f"--eval_dataset={tmp_path}", f"--out_dir={tmp_path}", "--model=x"]),
        ("training.train", [f"--config={tmp_path}/missing.json", f"--workdir={tmp_path}/t"]),
    ]:
        out = subprocess.run(
            [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 2, (module, out.stderr[-2000:])
        assert "error:" in out.stderr
