"""Tests for keras_style.train.data: folder and TFDS pipelines, odd image files, corrupt files."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from keras_style.core import images
from keras_style.train import data


def _write(path, mode="RGB", size=(40, 30), seed=0, **save_kwargs):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path, **save_kwargs)
    return path


@pytest.fixture
def image_dir(tmp_path):
    """A folder tree with every colour layout the pipeline must accept, plus bad files."""
    root = tmp_path / "photos"
    _write(root / "rgb.jpg")
    _write(root / "gray.jpg", mode="L", size=(20, 50))
    _write(root / "cmyk.jpg", mode="CMYK")
    _write(root / "nested" / "deeper" / "rgba.png", mode="RGBA", size=(12, 9))
    _write(root / "nested" / "palette.PNG", mode="P")
    good_jpeg = (root / "rgb.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 3])
    (root / "not_an_image.png").write_bytes(b"hello, world")
    (root / "notes.txt").write_text("not picked up: wrong suffix")
    return root


def test_lists_images_recursively_by_suffix(image_dir):
    names = {p.name for p in images.list_image_files(image_dir)}
    assert names == {
        "rgb.jpg",
        "gray.jpg",
        "cmyk.jpg",
        "rgba.png",
        "palette.PNG",
        "truncated.jpg",
        "not_an_image.png",
    }


def test_missing_or_empty_folder_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        images.list_image_files(tmp_path / "nope")
    with pytest.raises(ValueError, match="No images"):
        images.list_image_files(tmp_path)


def test_corrupt_files_are_skipped_and_counted(image_dir):
    dataset, info = data.image_folder_dataset(
        image_dir, image_size=32, batch_size=5, shuffle=False, repeat=False, augment=False
    )
    assert info.num_examples == 5
    assert sorted(p.name for p, _ in info.skipped) == ["not_an_image.png", "truncated.jpg"]
    assert info.to_json()["num_skipped"] == 2
    batches = list(dataset)
    assert len(batches) == 1, "all five readable files, nothing dropped"
    batch = batches[0].numpy()
    assert batch.shape == (5, 32, 32, 3) and batch.dtype == np.float32
    assert 0 <= batch.min() and batch.max() <= 255
    # The grayscale file becomes three equal channels.
    # Files come in sorted path order: cmyk, gray, rgba, palette, rgb.
    gray = batch[1]
    np.testing.assert_allclose(gray[..., 0], gray[..., 2], atol=1.0)
    assert not np.allclose(batch[0][..., 0], batch[0][..., 2], atol=1.0)


def test_all_files_unreadable_is_a_value_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ValueError, match="readable"):
        data.image_folder_dataset(tmp_path, 32, 1)


def test_decode_errors_that_pass_the_check_are_dropped_not_fatal(image_dir):
    """validate='none' lets the bad files reach tf.data; they are dropped there."""
    dataset, info = data.image_folder_dataset(
        image_dir, 32, 1, shuffle=False, repeat=False, validate="none"
    )
    assert info.skipped == ()
    assert len(list(dataset)) == 5


def test_training_stream_repeats_with_random_crops_of_small_images(image_dir):
    dataset, _ = data.image_folder_dataset(image_dir, image_size=48, batch_size=4, seed=3)
    batches = [b.numpy() for b in dataset.take(6)]  # 24 crops from 5 files: several passes
    assert all(b.shape == (4, 48, 48, 3) for b in batches)
    stacked = np.concatenate(batches)
    assert len({x.tobytes() for x in stacked}) > 5, "crops and flips vary between passes"


def test_stream_from_a_batch_is_the_rest_of_the_whole_stream(image_dir):
    """What a resumed training run relies on: start_batch=k continues the stream exactly."""

    def stream(start, count, seed=3):
        dataset, _ = data.image_folder_dataset(
            image_dir, image_size=24, batch_size=2, seed=seed, start_batch=start
        )
        return [b.numpy() for b in dataset.take(count)]

    whole = stream(0, 9)  # 18 crops of 5 files: the stream crosses three passes
    for start in (1, 4, 7):
        rest = stream(start, 9 - start)
        for i, (got, want) in enumerate(zip(rest, whole[start:], strict=True)):
            np.testing.assert_array_equal(got, want, err_msg=f"start {start}, batch {i}")
    assert not np.array_equal(stream(0, 2)[1], stream(0, 2, seed=4)[1])  # the seed matters
    first_pass = np.concatenate(whole)[:5].reshape(5, -1).mean(axis=1)
    second_pass = np.concatenate(whole)[5:10].reshape(5, -1).mean(axis=1)
    assert not np.allclose(first_pass, second_pass), "each pass has its own order and crops"


def test_unseeded_streams_differ(image_dir):
    first, _ = data.image_folder_dataset(image_dir, image_size=24, batch_size=5)
    second, _ = data.image_folder_dataset(image_dir, image_size=24, batch_size=5)
    assert not np.array_equal(next(iter(first)).numpy(), next(iter(second)).numpy())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_batch": -1}, "non-negative integer"),
        ({"start_batch": 1.5}, "non-negative integer"),
        ({"start_batch": 2, "repeat": False}, "repeated"),
    ],
)
def test_bad_start_batch_is_a_value_error(image_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.image_folder_dataset(image_dir, image_size=24, batch_size=2, **kwargs)


def test_files_only_pil_reads_are_a_value_error_not_an_endless_stream(tmp_path):
    """TIFF data under a .png name passes PIL's check; tf.io cannot decode it."""
    for i in range(2):
        _write(tmp_path / f"photo{i}.png", seed=i, format="TIFF")
    with pytest.raises(ValueError, match="TensorFlow cannot decode any of the 2 image files"):
        data.image_folder_dataset(tmp_path, image_size=16, batch_size=1)
    _write(tmp_path / "real.png", seed=5)  # one decodable file: a stream that drops the others
    dataset, info = data.image_folder_dataset(tmp_path, image_size=16, batch_size=2, seed=0)
    assert info.num_examples == 3
    assert next(iter(dataset)).shape == (2, 16, 16, 3)


def test_resize_short_side_upscales_and_keeps_aspect():
    image = tf.zeros((25, 47, 3), tf.uint8)
    out = data.resize_short_side(image, 64)
    assert tuple(out.shape) == (64, 121, 3)
    out = data.resize_short_side(tf.zeros((300, 200, 3), tf.uint8), 100)
    assert tuple(out.shape) == (150, 100, 3)


def test_photo_size_crops_a_part_of_the_enlarged_photo(image_dir):
    # A horizontal ramp 0..255 over 64 px: a crop of the whole short side spans most of the
    # range; after enlarging the short side to 4x the crop, a crop spans about a quarter.
    ramp = np.broadcast_to(np.linspace(0, 255, 64)[None, :, None], (64, 64, 3)).astype(np.uint8)
    image = tf.constant(ramp)
    whole = data.crop_to_square(image, 32, augment=False).numpy()
    part = data.crop_to_square(image, 32, augment=False, photo_size=128).numpy()
    assert whole.shape == part.shape == (32, 32, 3)
    spread = lambda crop: crop[..., 0].max() - crop[..., 0].min()  # noqa: E731
    assert spread(whole) > 200 and 40 < spread(part) < 80
    assert part[..., 0].mean() == pytest.approx(127.5, abs=3)  # the central part
    with pytest.raises(ValueError, match="photo_size must be an integer >= image_size"):
        data.image_folder_dataset(image_dir, image_size=32, photo_size=16)
    dataset, _ = data.image_folder_dataset(image_dir, image_size=16, batch_size=2, photo_size=64)
    assert next(iter(dataset)).shape == (2, 16, 16, 3)


@pytest.mark.parametrize("kwargs", [{"image_size": 0}, {"batch_size": 0}, {"image_size": 8}])
def test_bad_sizes_are_value_errors(image_dir, kwargs):
    with pytest.raises(ValueError):
        data.image_folder_dataset(image_dir, **kwargs)


def test_bad_validate_mode_is_a_value_error(image_dir):
    with pytest.raises(ValueError, match="validate"):
        data.image_folder_dataset(image_dir, validate="maybe")


def test_tfds_coco_pipeline_on_mock_data():
    """Mock COCO images are 25-47 px: they must be upscaled before the 64 px crops."""
    with tfds.testing.mock_data(num_examples=6):
        dataset, info = data.tfds_dataset("coco/2017", image_size=64, batch_size=4, seed=0)
        batches = [b.numpy() for b in dataset.take(3)]  # 12 crops from 6 examples: repeats
    assert info.source == "coco/2017"
    assert all(b.shape == (4, 64, 64, 3) and b.dtype == np.float32 for b in batches)
    assert all(0 <= b.min() and b.max() <= 255 for b in batches)
    assert np.std(np.concatenate(batches)) > 10, "real (mock) pixels, not a constant"


def test_tfds_stream_from_a_batch_is_a_fresh_repeatable_stream():
    """TFDS cannot be entered mid-stream cheaply: start_batch keys a new stream instead."""

    def first_batch(start):
        with tfds.testing.mock_data(num_examples=6):
            dataset, _ = data.tfds_dataset(
                "coco/2017", image_size=32, batch_size=3, seed=1, start_batch=start
            )
            return next(iter(dataset)).numpy()

    np.testing.assert_array_equal(first_batch(5), first_batch(5))
    assert not np.array_equal(first_batch(5), first_batch(0))


def test_tfds_unknown_image_feature_is_a_value_error():
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(ValueError, match="feature"):
            data.tfds_dataset("coco/2017", image_key="picture", image_size=32, batch_size=1)


def test_content_dataset_prefers_the_folder(image_dir):
    _, info = data.content_dataset(image_dir=image_dir, image_size=32, batch_size=2)
    assert info.source == str(image_dir)
    with pytest.raises(ValueError, match="folder"):
        data.content_dataset(image_dir=None, dataset="")


def test_sample_images_are_central_crops(image_dir):
    samples = data.sample_images(image_dir, image_size=24, count=3)
    assert samples.shape == (3, 24, 24, 3)
    again = data.sample_images(image_dir, image_size=24, count=3)
    np.testing.assert_array_equal(samples, again)
