"""tf.data pipelines of content photos for training the feed-forward stylizer.

Two sources, one output: batches of float32 RGB crops in [0, 255] shaped
(batch, size, size, 3), the package's pixel convention.

- `image_folder_dataset`: every JPEG/PNG/BMP/GIF/WebP under a folder, found
  recursively. Files are checked with PIL first (in threads; JPEGs decode at
  1/8 scale, so the check is cheap), so unreadable or truncated files are
  skipped and *counted* before training starts instead of crashing it.
- `tfds_dataset`: a TFDS dataset (`coco/2017` by default), decoded by TFDS in
  parallel. (TFDS would let us skip its decoding, but its `mock_data` then
  fails for `coco/2017`, and the tests must exercise the real path.)

Both decode with `channels=3` (grayscale, palette, CMYK, RGBA and 16-bit files
all become 8-bit RGB), resize the short side to the crop size (so images
smaller than the crop are upscaled), take a random crop, flip at random,
batch with a fixed batch size and prefetch. A decode error that slips past the
check is dropped by `ignore_errors` (and logged by tf.data), never fatal.

Every random choice is a pure function of the seed and the element's position
in the stream (stateless ops keyed by (seed, index); pass p of a folder visits
its files in a permutation keyed by (seed, p)). So `start_batch` rebuilds a
folder's stream from any batch on without reading the images before it, and a
resumed training run sees exactly the batches the uninterrupted run would have
seen. (A TFDS stream cannot be entered in the middle without reading every
record before it; there `start_batch` starts a fresh stream keyed by it.)
"""

import concurrent.futures
import dataclasses
import os
import random
import warnings

import tensorflow as tf
from PIL import Image

from keras_style.core import images
from keras_style.train.config import VALIDATE_MODES

_AUTOTUNE = tf.data.AUTOTUNE
_FOREVER = 2**62  # passes of a repeated stream


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a pipeline reads.

    Attributes:
        source: the folder or TFDS name.
        num_examples: images per pass (None when unknown).
        skipped: (path, reason) for every file left out as unreadable.
    """

    source: str
    num_examples: int | None
    skipped: tuple = ()

    def to_json(self):
        """A JSON-ready summary (paths as strings), e.g. for the work dir."""
        return {
            "source": self.source,
            "num_examples": self.num_examples,
            "num_skipped": len(self.skipped),
            "skipped": [[str(path), reason] for path, reason in self.skipped],
        }


def _check_file(path, mode):
    """Returns None if PIL can read `path` (as far as `mode` checks), else the reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                width, height = img.size
                if width <= 0 or height <= 0:
                    return f"empty image ({width}x{height})"
                if mode == "full":
                    img.draft("RGB", (64, 64))  # JPEG: decode at reduced scale
                    img.load()
    except Exception as e:  # PIL raises many types for bad files
        return f"{type(e).__name__}: {e}"
    return None


def scan_image_files(paths, mode="full", workers=None):
    """Splits files into readable ones and skipped ones.

    Args:
        paths: image file paths.
        mode: "full" decodes each file (catches truncated data), "header"
            only parses headers (fast, for huge folders), "none" trusts all.
        workers: threads used (PIL releases the GIL while decoding).

    Returns:
        (readable paths in input order, tuple of (path, reason) for the others).
    """
    if mode not in VALIDATE_MODES:
        raise ValueError(f"validate must be one of {VALIDATE_MODES}, got {mode!r}")
    paths = list(paths)
    if mode == "none":
        return paths, ()
    workers = workers or min(32, (os.cpu_count() or 1) * 4)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(lambda p: _check_file(p, mode), paths))
    good = [p for p, reason in zip(paths, reasons, strict=True) if reason is None]
    skipped = tuple(
        (p, reason) for p, reason in zip(paths, reasons, strict=True) if reason is not None
    )
    return good, skipped


def decode_image(contents):
    """Encoded bytes -> (H, W, 3) uint8 RGB; any channel layout, first frame of animations."""
    image = tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])


def resize_short_side(image, size):
    """Resizes (H, W, 3) so the short side is `size` (up or down); float32 [0, 255] out."""
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = tf.cast(size, tf.float32) / tf.minimum(height, width)
    new_size = tf.maximum(tf.cast(tf.math.ceil(tf.stack([height, width]) * scale), tf.int32), size)
    image = tf.image.resize(tf.cast(image, tf.float32), new_size, antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


def crop_to_square(image, size, augment=True, key=None, photo_size=None):
    """Short side to `photo_size` (default `size`), then a random (or central) size x size
    crop and a random flip.

    Args:
        key: the stateless random key ((2,) integer tensor) of the crop and the
            flip; needed when `augment`. The same key gives the same crop.
    """
    image = resize_short_side(image, photo_size or size)
    if not augment:
        shape = tf.shape(image)
        top, left = (shape[0] - size) // 2, (shape[1] - size) // 2
        return tf.ensure_shape(image[top : top + size, left : left + size], [size, size, 3])
    crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    image = tf.image.stateless_random_crop(image, [size, size, 3], seed=crop_key)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_key)


def _to_rgb(image):
    """Already decoded (H, W, C) images with C in {1, 3, 4} -> (H, W, 3)."""
    channels = image.shape[-1]
    if channels == 1:
        return tf.image.grayscale_to_rgb(image)
    if channels == 4:
        return image[..., :3]
    if channels != 3:
        raise ValueError(f"Expected images with 1, 3 or 4 channels, got shape {image.shape}")
    return image


def _check_sizes(image_size, batch_size):
    for name, value in (("image_size", image_size), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")


def _check_photo_size(photo_size, image_size):
    if photo_size is not None and (not isinstance(photo_size, int) or photo_size < image_size):
        raise ValueError(
            f"photo_size must be an integer >= image_size ({image_size}), got {photo_size!r}"
        )


def check_start_batch(start_batch, repeat):
    """Raises ValueError unless `start_batch` is a valid first batch of a (repeated) stream."""
    if not isinstance(start_batch, int) or isinstance(start_batch, bool) or start_batch < 0:
        raise ValueError(f"start_batch must be a non-negative integer, got {start_batch!r}")
    if start_batch and not repeat:
        raise ValueError("start_batch needs a repeated (training) stream")


def seed_or_random(seed):
    """The stream's seed: `seed`, or a fresh random one (an unrepeatable stream)."""
    return random.SystemRandom().randrange(2**31) if seed is None else seed


def _finish(elements, image_size, batch_size, *, augment, seed, encoded, ordered, photo_size):
    """(image, element index) pairs -> crops -> fixed-size batches, prefetched.

    Each crop and flip is keyed by (seed, element index): the same element of
    the stream gets the same crop whichever batch the stream starts at.
    """

    def to_crop(image, index):
        image = decode_image(image) if encoded else _to_rgb(image)
        key = tf.stack([tf.constant(seed, tf.int64), index])
        return crop_to_square(image, image_size, augment, key, photo_size)

    # Order matters for unshuffled or seeded streams; otherwise let fast images overtake.
    crops = elements.map(to_crop, num_parallel_calls=_AUTOTUNE, deterministic=ordered)
    crops = crops.ignore_errors(log_warning=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return crops.batch(batch_size, drop_remainder=True).prefetch(_AUTOTUNE).with_options(options)


def _file_order(count, *, seed, shuffle, repeat, first_element):
    """(file index, element index) of every element of a folder's stream from `first_element`.

    Pass p visits the files in a permutation keyed by (seed, p), so the stream
    can be entered at any element by skipping indices, without reading files.
    """
    first_pass, offset = divmod(first_element, count)
    indices = tf.range(count, dtype=tf.int64)

    def one_pass(p):
        order = indices
        if shuffle:
            key = tf.stack([tf.constant(seed, tf.int64), p])
            order = tf.random.experimental.stateless_shuffle(indices, seed=key)
        return tf.data.Dataset.from_tensor_slices((order, p * count + indices))

    passes = tf.data.Dataset.range(first_pass, _FOREVER if repeat else first_pass + 1)
    return passes.flat_map(one_pass).skip(offset)


def _check_tensorflow_decodes_one(files):
    """Raises unless tf.io can decode at least one of `files` (then the stream cannot stall).

    A repeated stream whose every image fails to decode would drop them all
    forever; PIL's check (or validate="none") can pass files TensorFlow cannot read.
    """
    for path in files:
        try:
            decode_image(tf.io.read_file(path))
            return
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
            continue
    raise ValueError(f"TensorFlow cannot decode any of the {len(files)} image files")


def image_folder_dataset(
    directory,
    image_size=256,
    batch_size=4,
    *,
    shuffle=True,
    repeat=True,
    augment=True,
    validate="full",
    seed=None,
    photo_size=None,
    start_batch=0,
):
    """Batches of random crops from every image file under `directory`.

    Args:
        directory: folder searched recursively for `images.IMAGE_SUFFIXES` files.
        image_size: side of the square crops.
        batch_size: images per batch (the last partial batch is dropped).
        shuffle: reshuffle the files on every pass.
        repeat: cycle forever (training) instead of one pass.
        augment: random crops and flips; False takes central crops.
        validate: "full", "header" or "none" (see `scan_image_files`).
        seed: makes shuffling, cropping and flipping repeatable.
        photo_size: short side the photos are resized to before cropping
            (default `image_size`: crops span the short side). Larger values
            crop a part of a larger photo, so the crops show objects at the
            scale of larger photos (e.g. those the network will stylize).
        start_batch: first batch of the (repeated) stream: with the same seed,
            the stream from `start_batch` is the one the stream from 0 yields
            after `start_batch` batches (files that fail to decode aside), at
            no cost for the batches left out. Resumed training uses it.

    Returns:
        (tf.data.Dataset of (batch_size, image_size, image_size, 3) float32,
        `DatasetInfo` with the files skipped as unreadable).

    Raises:
        ValueError: on bad sizes, a missing folder, or no readable image.
    """
    _check_sizes(image_size, batch_size)
    _check_photo_size(photo_size, image_size)
    check_start_batch(start_batch, repeat)
    good, skipped = scan_image_files(images.list_image_files(directory), validate)
    if not good:
        raise ValueError(f"None of the {len(skipped)} image files under {directory} is readable")
    paths = [str(p) for p in good]
    _check_tensorflow_decodes_one(paths)
    stream_seed = seed_or_random(seed)
    order = _file_order(
        len(paths),
        seed=stream_seed,
        shuffle=shuffle,
        repeat=repeat,
        first_element=start_batch * batch_size,
    )
    files = tf.constant(paths)
    encoded = order.map(
        lambda i, index: (tf.io.read_file(tf.gather(files, i)), index),
        num_parallel_calls=_AUTOTUNE,
    )
    dataset = _finish(
        encoded,
        image_size,
        batch_size,
        augment=augment,
        seed=stream_seed,
        encoded=True,
        ordered=not shuffle or seed is not None,
        photo_size=photo_size,
    )
    return dataset, DatasetInfo(str(directory), len(good), skipped)


def tfds_dataset(
    name="coco/2017",
    *,
    split="train",
    data_dir=None,
    manual_dir=None,
    image_key="image",
    image_size=256,
    batch_size=4,
    shuffle=True,
    repeat=True,
    augment=True,
    shuffle_buffer=128,
    download=True,
    seed=None,
    photo_size=None,
    start_batch=0,
):
    """Batches of random crops from the images of a TFDS dataset.

    Args:
        name: TFDS name, e.g. "coco/2017" (needs its zips downloaded or in
            `manual_dir`; tens of GB).
        split: TFDS split.
        data_dir: TFDS data folder (None: TFDS's default).
        manual_dir: folder holding manually downloaded source archives.
        image_key: the image feature of each example.
        image_size, batch_size, shuffle, repeat, augment, seed, photo_size: as
            in `image_folder_dataset`.
        shuffle_buffer: decoded images buffered for shuffling (on top of TFDS'
            file shuffling); about 1 MB each for COCO.
        download: let TFDS download and prepare the dataset if missing.
        start_batch: a resumed run's first step. Entering a shuffled TFDS
            stream in the middle would read every record before it, so a
            nonzero value starts a fresh stream keyed by (seed, start_batch)
            instead of replaying the first images.

    Returns:
        (tf.data.Dataset, `DatasetInfo`).
    """
    import tensorflow_datasets as tfds

    _check_sizes(image_size, batch_size)
    _check_photo_size(photo_size, image_size)
    check_start_batch(start_batch, repeat)
    stream_seed = seed_or_random(seed) + start_batch
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    dataset, info = tfds.load(
        name,
        split=split,
        data_dir=data_dir,
        shuffle_files=shuffle,
        download=download,
        with_info=True,
        download_and_prepare_kwargs={"download_config": download_config} if manual_dir else None,
        read_config=tfds.ReadConfig(shuffle_seed=stream_seed),
    )
    if image_key not in info.features:
        raise ValueError(f"{name} has no feature {image_key!r}; it has {list(info.features)}")
    images = dataset.map(lambda example: example[image_key], num_parallel_calls=_AUTOTUNE)
    if shuffle:
        images = images.shuffle(shuffle_buffer, seed=stream_seed, reshuffle_each_iteration=True)
    if repeat:
        images = images.repeat()
    elements = tf.data.Dataset.zip(
        images, tf.data.Dataset.range(start_batch * batch_size, _FOREVER)
    )
    dataset = _finish(
        elements,
        image_size,
        batch_size,
        augment=augment,
        seed=stream_seed,
        encoded=False,
        ordered=not shuffle or seed is not None,
        photo_size=photo_size,
    )
    num = info.splits[split].num_examples if split in info.splits else None
    return dataset, DatasetInfo(name, num)


def content_dataset(image_dir=None, dataset="coco/2017", data_dir=None, **kwargs):
    """`image_folder_dataset(image_dir)` when a folder is given, else `tfds_dataset(dataset)`."""
    if image_dir:
        return image_folder_dataset(image_dir, **kwargs)
    if not dataset:
        raise ValueError("Give an image folder or a TFDS dataset name")
    return tfds_dataset(dataset, data_dir=data_dir, **kwargs)


def sample_images(directory, image_size=256, count=4):
    """Up to `count` readable images from a folder as a central-crop (n, S, S, 3) float32 batch.

    For fixed preview images during training.
    """
    dataset, _ = image_folder_dataset(
        directory, image_size, 1, shuffle=False, repeat=False, augment=False, validate="full"
    )
    return tf.concat(list(dataset.take(count)), axis=0).numpy()
