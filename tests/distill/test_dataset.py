"""Stylized-pair datasets: recipe and card, resumable sharded writing, reading, TFDS builder."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import make_photo
from PIL import Image

from keras_style.core import images
from keras_style.distill import dataset as sd
from keras_style.distill.recipe import SlowRecipe, file_sha256
from keras_style.distill.sources import FolderSource, TfdsSource

SIZE = 32


@pytest.fixture
def photo_dir(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        pixels = make_photo(36 + 2 * i, 44, seed=i).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


@pytest.fixture
def recipe(tmp_path, make_slow_recipe):
    return make_slow_recipe(tmp_path, SIZE)


def _ids(directory):
    return [e["id"].decode() for e in sd.load_stylized_dataset(directory).as_numpy_iterator()]


def test_recipe_fills_defaults_and_validates(recipe):
    assert recipe.optimize["optimizer"] == "lbfgs" and recipe.loss["style_weight"] > 0
    assert recipe.optimize_config().size == SIZE
    with pytest.raises(ValueError, match="Style image not found"):
        SlowRecipe(style_files=["/nonexistent.jpg"])
    with pytest.raises(ValueError, match="Unknown optimize option"):
        SlowRecipe(style_files=recipe.style_files, optimize={"iters": 3})
    with pytest.raises(ValueError, match="image_size"):
        SlowRecipe(style_files=recipe.style_files, image_size=8)
    with pytest.raises(ValueError, match="image_size, not optimize.size"):
        SlowRecipe(style_files=recipe.style_files, optimize={"size": 99})


def test_card_round_trip(tmp_path, photo_dir, recipe):
    source = FolderSource(photo_dir, skip=1, max_examples=3)
    assert len(source) == 3 and len(source.skipped) == 1  # the broken file is left out
    card = sd.make_card(recipe, source, examples_per_shard=2)
    sd.write_card(tmp_path, card)
    again = sd.read_card(tmp_path)
    assert again == json.loads(json.dumps(card))
    assert SlowRecipe.from_json(again["recipe"]) == recipe
    assert again["recipe"]["style_sha256"][0] == file_sha256(recipe.style_files[0])
    assert [s["num_examples"] for s in again["shards"]] == [2, 1]
    assert again["recipe"]["optimize"]["iterations"] == 2
    assert again["package_version"]


def test_read_card_rejects_non_datasets(tmp_path):
    with pytest.raises(ValueError, match="not a stylized dataset"):
        sd.read_card(tmp_path)
    (tmp_path / sd.CARD_NAME).write_text("{")
    with pytest.raises(ValueError, match="Corrupt"):
        sd.read_card(tmp_path)


def test_write_and_load(tmp_path, photo_dir, recipe):
    source = FolderSource(photo_dir, max_examples=3)
    card = sd.write_stylized_dataset(
        tmp_path / "ds", source, recipe, examples_per_shard=2, verbose=0
    )
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == sorted(
        [sd.CARD_NAME] + [s["file"] for s in card["shards"]]
    )
    ids, contents, stylized = sd.load_pairs(tmp_path / "ds")
    assert ids == ["p0.png", "p1.png", "p2.png"]
    assert contents.shape == stylized.shape == (3, SIZE, SIZE, 3)
    expected = images.center_square(make_photo(36, 44, seed=0), SIZE)
    np.testing.assert_allclose(contents[0], np.rint(expected), atol=1)
    assert np.abs(stylized - contents).mean() > 1.0  # the slow method changed the images


def test_interrupted_generation_resumes_to_the_same_dataset(tmp_path, photo_dir, recipe):
    source = FolderSource(photo_dir)
    whole = tmp_path / "whole"
    sd.write_stylized_dataset(whole, source, recipe, examples_per_shard=2, verbose=0)

    class Killed(Exception):
        pass

    def kill(path):
        raise Killed(path)

    resumed = tmp_path / "resumed"
    with pytest.raises(Killed):
        sd.write_stylized_dataset(
            resumed, source, recipe, examples_per_shard=2, verbose=0, on_shard_written=kill
        )
    first = sorted(resumed.glob("stylized-*"))
    assert len(first) == 1
    mtime = first[0].stat().st_mtime_ns
    stale = resumed / f".{sd.shard_layout(5, 2)[1][0]}.abc.tmp.tfrecord"
    stale.write_bytes(b"half a shard")  # what a kill in the middle of a shard leaves
    with pytest.raises(ValueError, match="incomplete"):
        sd.load_stylized_dataset(resumed)
    assert _ids(whole)[:2] == [
        e["id"].decode()
        for e in sd.load_stylized_dataset(resumed, allow_incomplete=True).as_numpy_iterator()
    ]

    written = []
    sd.write_stylized_dataset(
        resumed, source, recipe, examples_per_shard=2, verbose=0, on_shard_written=written.append
    )
    assert len(written) == 2 and first[0].stat().st_mtime_ns == mtime  # finished shard kept
    assert not stale.exists()
    a, b = sd.load_pairs(whole), sd.load_pairs(resumed)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[2], b[2], atol=2)
    assert sd.read_card(whole) == sd.read_card(resumed)


def test_workers_split_the_shards_and_cards_must_match(tmp_path, photo_dir, recipe):
    source = FolderSource(photo_dir, max_examples=4)
    out = tmp_path / "ds"
    expected = {1: ["stylized-00001", "stylized-00003"], 0: [f"stylized-0000{i}" for i in range(4)]}
    for worker in (1, 0):
        sd.write_stylized_dataset(
            out, source, recipe, examples_per_shard=1, num_workers=2, worker_index=worker, verbose=0
        )
        assert sorted(p.name[:14] for p in out.glob("stylized-*")) == expected[worker]
    assert _ids(out) == [f"p{i}.png" for i in range(4)]
    other = SlowRecipe(**{**recipe.__dict__, "optimize": {"iterations": 3}})
    with pytest.raises(ValueError, match="different stylized dataset"):
        sd.write_stylized_dataset(out, source, other, examples_per_shard=1, verbose=0)
    with pytest.raises(ValueError, match="worker_index"):
        sd.write_stylized_dataset(out, source, recipe, num_workers=2, worker_index=2, verbose=0)


def test_tfds_builder_builds_the_same_pairs(tmp_path, photo_dir, recipe):
    from keras_style.distill import tfds_builder

    source = FolderSource(photo_dir, max_examples=3)
    builder = tfds_builder.make_builder(recipe, source, data_dir=tmp_path / "tfds")
    builder.download_and_prepare()
    examples = sorted(builder.as_dataset(split="train").as_numpy_iterator(), key=lambda e: e["id"])
    assert [e["id"].decode() for e in examples] == ["p0.png", "p1.png", "p2.png"]
    assert examples[0]["stylized"].shape == (SIZE, SIZE, 3)
    assert builder.info.metadata["card"]["recipe"]["optimize"]["iterations"] == 2
    ids, contents, stylized = sd.load_pairs(_written(tmp_path, source, recipe))
    for e, content, target in zip(examples, contents, stylized, strict=True):
        np.testing.assert_array_equal(e["content"], content)
        np.testing.assert_allclose(e["stylized"], target, atol=2)


def test_tfds_dataset_as_content_source(tmp_path, photo_dir, recipe):
    from keras_style.distill import tfds_builder

    built = tfds_builder.make_builder(recipe, FolderSource(photo_dir, max_examples=3), tmp_path)
    built.download_and_prepare()
    source = TfdsSource(
        "stylized_pairs/custom", data_dir=tmp_path, image_key="content", skip=1, download=False
    )
    assert len(source) == 2 and source.describe()["type"] == "tfds"
    out = tmp_path / "from_tfds"
    card = sd.write_stylized_dataset(out, source, recipe, examples_per_shard=1, verbose=0)
    ids = _ids(out)
    assert len(ids) == 2 and set(ids) < {"p0.png", "p1.png", "p2.png"}
    assert card["content"]["name"] == "stylized_pairs/custom"
    with pytest.raises(ValueError, match="no prepared split"):
        TfdsSource("stylized_pairs/custom", split="test", data_dir=tmp_path, download=False)


def _written(tmp_path, source, recipe):
    out = tmp_path / "records"
    sd.write_stylized_dataset(out, source, recipe, examples_per_shard=2, verbose=0)
    return out


def _import_beam():
    """apache_beam (in the test extra): a skip outside CI, an ImportError failure in CI."""
    if os.environ.get("CI"):  # set by .ci/run: CI must run the Beam path, never skip it
        import apache_beam

        return apache_beam
    return pytest.importorskip("apache_beam", reason="needs the beam extra (apache-beam)")


def _sorted_examples(builder):
    return sorted(builder.as_dataset(split="train").as_numpy_iterator(), key=lambda e: e["id"])


def test_tfds_builder_on_beam(tmp_path, photo_dir, recipe, monkeypatch):
    """Beam's DirectRunner builds, in two work units, the pairs the plain builder builds."""
    beam = _import_beam()
    import tensorflow_datasets as tfds

    from keras_style.distill import tfds_builder

    monkeypatch.setattr(tfds_builder, "BEAM_CHUNK", 2)  # 3 photos: work units (0, 2) and (2, 3)
    source = FolderSource(photo_dir, max_examples=3)
    on_beam = tfds_builder.make_builder(recipe, source, tmp_path / "beam", use_beam=True)
    on_beam.download_and_prepare(
        download_config=tfds.download.DownloadConfig(beam_runner=beam.runners.DirectRunner())
    )
    plain = tfds_builder.make_builder(recipe, source, tmp_path / "plain")
    plain.download_and_prepare()

    assert on_beam.info.splits["train"].num_examples == 3
    assert on_beam.info.metadata["card"] == plain.info.metadata["card"]
    examples, expected = _sorted_examples(on_beam), _sorted_examples(plain)
    assert [e["id"].decode() for e in examples] == ["p0.png", "p1.png", "p2.png"]
    for e, want in zip(examples, expected, strict=True):
        for key in ("content", "stylized"):
            assert e[key].shape == (SIZE, SIZE, 3) and e[key].dtype == np.uint8
        np.testing.assert_array_equal(e["content"], want["content"])
        np.testing.assert_allclose(e["stylized"], want["stylized"], atol=2)
        assert np.abs(e["stylized"].astype(float) - e["content"]).mean() > 1.0
    first = images.center_square(make_photo(36, 44, seed=0), SIZE)
    np.testing.assert_allclose(examples[0]["content"], np.rint(first), atol=1)


@pytest.mark.slow
def test_killed_generation_process_resumes(tmp_path, photo_dir, recipe):
    """SIGKILL the binary after its first shard, rerun it: the same dataset as one clean run."""
    out = tmp_path / "killed"
    flags = {
        "style": recipe.style_files[0],
        "backbone": "vgg16",
        "vgg_weights": recipe.vgg_weights,
        "image_dir": photo_dir,
        "image_size": SIZE,
        "iterations": 2,
        "batch_size": 2,
        "examples_per_shard": 1,
        "output_dir": out,
        "verbose": 0,
    }
    command = [sys.executable, "-m", "training.make_stylized_dataset"]
    command += [f"--{name}={value}" for name, value in flags.items()]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not list(out.glob("stylized-*")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert 1 <= len(list(out.glob("stylized-*"))) < 5, "the run was not interrupted mid-way"
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    clean = tmp_path / "clean"
    same = SlowRecipe(**{**recipe.__dict__, "optimize": {"iterations": 2}})
    sd.write_stylized_dataset(clean, FolderSource(photo_dir), same, examples_per_shard=1, verbose=0)
    assert sd.read_card(out) == sd.read_card(clean)
    a, b = sd.load_pairs(out), sd.load_pairs(clean)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[2], b[2], atol=2)


@pytest.mark.slow
def test_binary_splits_the_work_with_num_shards_and_shard_index(tmp_path, photo_dir, recipe):
    """README: `--num_shards/--shard_index` split the generation across processes."""
    out = tmp_path / "split"
    flags = {
        "style": recipe.style_files[0],
        "backbone": "vgg16",
        "vgg_weights": recipe.vgg_weights,
        "image_dir": photo_dir,
        "max_examples": 4,
        "image_size": SIZE,
        "iterations": 2,
        "batch_size": 2,
        "examples_per_shard": 1,
        "output_dir": out,
        "verbose": 0,
        "num_shards": 2,
    }
    command = [sys.executable, "-m", "training.make_stylized_dataset"]
    command += [f"--{name}={value}" for name, value in flags.items()]
    expected = {1: ["stylized-00001", "stylized-00003"], 0: [f"stylized-0000{i}" for i in range(4)]}
    for index in (1, 0):
        result = subprocess.run(
            [*command, f"--shard_index={index}"], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert sorted(p.name[:14] for p in out.glob("stylized-*")) == expected[index]
    assert _ids(out) == [f"p{i}.png" for i in range(4)]
    clean = tmp_path / "clean"
    same = SlowRecipe(**{**recipe.__dict__, "optimize": {"iterations": 2}})
    source = FolderSource(photo_dir, max_examples=4)
    sd.write_stylized_dataset(clean, source, same, examples_per_shard=1, verbose=0)
    assert sd.read_card(out) == sd.read_card(clean)
    a, b = sd.load_pairs(out), sd.load_pairs(clean)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[2], b[2], atol=2)
    bad = subprocess.run([*command, "--shard_index=2"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "worker_index" in bad.stderr + bad.stdout
