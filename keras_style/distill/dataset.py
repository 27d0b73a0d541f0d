"""Stylized-pair datasets: photos and their slow-method (Gatys) stylizations, for distillation.

A dataset is a folder of TFRecord shards plus `dataset_card.json`:

    dataset_card.json
    stylized-00000-of-00004.tfrecord
    ...

Each record holds one example: `id` (the photo's name in its source),
`content` (the photo, short side resized to `image_size` and centre-cropped
to a square, PNG) and `stylized` (the slow method's output for that crop,
PNG). The card records the style files and their hashes, every slow-method
option, the VGG weights, the content source and the package versions, so a
dataset is reproducible and self-describing; `load_stylized_dataset` reads
the whole folder back as one `tf.data.Dataset`.

Generation is long, so `write_stylized_dataset` is resumable and splittable:
the examples are assigned to shards in a fixed order, each shard is written
to a temporary file and renamed when complete, finished shards are skipped
on a rerun (a killed run loses at most the shard in progress), and
`num_workers`/`worker_index` let several processes or machines take every
n-th shard into the same folder. The per-example work (`PairGenerator`) is
shared with the TFDS builder in `keras_style.distill.tfds_builder`.
"""

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path

import keras
import numpy as np

import keras_style
from keras_style.core import images as image_lib
from keras_style.core import jsonio, losses, vgg
from keras_style.slow import optimize

#: Version of the record and card layout written by this module.
FORMAT_VERSION = 1

#: Name of the card inside a dataset folder.
CARD_NAME = "dataset_card.json"

_SHARD_TEMPLATE = "stylized-{index:05d}-of-{total:05d}.tfrecord"


# ----------------------------------------------------------------------------- recipe


@dataclasses.dataclass
class SlowRecipe:
    """Everything that decides the stylized images: style, size and slow-method options.

    Attributes:
        style_files: paths of the style images (several are blended).
        style_weights: one blend weight per style (None: equal).
        image_size: side of the square content crops and stylized images.
        backbone: VGG of the loss network, "vgg19" or "vgg16".
        vgg_weights: "imagenet" or a local weights file.
        loss: `losses.LossConfig` fields (missing ones take their defaults).
        optimize: `optimize.OptimizeConfig` fields; `size` is always
            `image_size` and `init` must be a name ("color_matched",
            "content" or "noise"), not an image.
        batch_size: photos stylized together in one slow-method run
            (L-BFGS shares its line search within a batch, so this is part of
            the recipe).
        precision: compute precision of the loss network, "float32" or
            "bfloat16"; "auto" is resolved on the machine that builds the
            dataset (`vgg.resolve_precision`) and recorded as such.
    """

    style_files: list
    style_weights: list | None = None
    image_size: int = 256
    backbone: str = "vgg19"
    vgg_weights: str = "imagenet"
    loss: dict = dataclasses.field(default_factory=dict)
    optimize: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 1
    precision: str = "auto"

    def __post_init__(self):
        self.precision = vgg.resolve_precision(self.precision)
        self.style_files = [str(f) for f in _as_list(self.style_files)]
        self.vgg_weights = str(self.vgg_weights)
        if not self.style_files:
            raise ValueError("The recipe needs at least one style file")
        for path in self.style_files:
            if not Path(path).is_file():
                raise ValueError(f"Style image not found: {path}")
        if self.style_weights is not None and len(self.style_weights) != len(self.style_files):
            raise ValueError(
                f"Got {len(self.style_weights)} style weights for {len(self.style_files)} styles"
            )
        _check_positive_int("image_size", self.image_size, minimum=16)
        _check_positive_int("batch_size", self.batch_size)
        if self.optimize.get("size", self.image_size) != self.image_size:
            raise ValueError("Set the output size with image_size, not optimize.size")
        self.loss = dataclasses.asdict(self.loss_config())  # validates, fills defaults
        self.optimize = _optimize_fields(self.optimize_config())

    def loss_config(self):
        """The `losses.LossConfig` of the recipe."""
        try:
            return losses.LossConfig(**self.loss)
        except TypeError as e:
            raise ValueError(f"Unknown loss option in {sorted(self.loss)}: {e}") from e

    def optimize_config(self):
        """The `optimize.OptimizeConfig` of the recipe (size = `image_size`)."""
        options = {**self.optimize, "size": self.image_size}
        if not isinstance(options.get("init", "content"), str):
            raise ValueError("A dataset recipe's init must be a name, e.g. 'content' or 'noise'")
        try:
            return optimize.OptimizeConfig(**options)
        except TypeError as e:
            raise ValueError(f"Unknown optimize option in {sorted(self.optimize)}: {e}") from e

    def to_json(self):
        """JSON-ready fields plus content hashes of the style and weight files."""
        return {
            **dataclasses.asdict(self),
            "style_sha256": [file_sha256(f) for f in self.style_files],
            "vgg_weights_sha256": (
                file_sha256(self.vgg_weights) if Path(self.vgg_weights).is_file() else None
            ),
        }

    @classmethod
    def from_json(cls, fields):
        """Inverse of `to_json` (hashes are dropped; paths must exist here)."""
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {"precision": "float32", **fields}  # cards written before the option existed
        return cls(**{k: v for k, v in fields.items() if k in names})


def _optimize_fields(config):
    fields = dataclasses.asdict(config)
    fields.pop("size")
    return fields


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_positive_int(name, value, minimum=1):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def file_sha256(path):
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- content


class FolderSource:
    """Content photos from an image folder, in sorted order; ids are relative paths.

    Args:
        directory: searched recursively for image files; unreadable files are
            left out (and counted in `skipped`).
        skip: leave out the first `skip` photos (e.g. held out for evaluation).
        max_examples: use at most this many photos after `skip` (None: all).
    """

    def __init__(self, directory, skip=0, max_examples=None):
        from keras_style.train import data

        self.directory = Path(directory)
        files, self.skipped = data.scan_image_files(image_lib.list_image_files(directory), "full")
        self.files = _select(files, skip, max_examples)
        self.skip, self.max_examples = skip, max_examples

    def __len__(self):
        return len(self.files)

    def describe(self):
        """JSON description for the card (ids hashed: enough to check equality)."""
        ids = [self.id_of(f) for f in self.files]
        return {
            "type": "image_dir",
            "image_dir": str(self.directory),
            "skip": self.skip,
            "max_examples": self.max_examples,
            "num_unreadable": len(self.skipped),
            "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        }

    def id_of(self, path):
        return Path(path).relative_to(self.directory).as_posix()

    def read(self, start, stop):
        """Yields (id, float32 (H, W, 3) image) for photos start..stop-1."""
        for path in self.files[start:stop]:
            yield self.id_of(path), image_lib.load_image(path)


class TfdsSource:
    """Content photos from a TFDS split (default `coco/2017` train), in its fixed order.

    Args:
        name: TFDS dataset name.
        split: split name (slicing such as "train[:1000]" is allowed).
        data_dir: TFDS data folder (None: TFDS's default).
        image_key: the image feature.
        skip, max_examples: as in `FolderSource`.
        download: let TFDS download and prepare the dataset if it is missing
            (coco/2017 is tens of GB).
        manual_dir: folder holding manually downloaded source archives.
    """

    def __init__(
        self,
        name="coco/2017",
        split="train",
        data_dir=None,
        image_key="image",
        skip=0,
        max_examples=None,
        download=True,
        manual_dir=None,
    ):
        self.name, self.split, self.data_dir, self.image_key = name, split, data_dir, image_key
        self.builder = _prepared_builder(name, split, data_dir, download, manual_dir)
        total = self.builder.info.splits[split].num_examples
        self.start = min(skip, total)
        self.stop = total if max_examples is None else min(total, self.start + max_examples)
        if image_key not in self.builder.info.features:
            raise ValueError(f"{name} has no feature {image_key!r}")

    def __len__(self):
        return self.stop - self.start

    def describe(self):
        return {
            "type": "tfds",
            "name": self.name,
            "version": str(self.builder.info.version),
            "split": self.split,
            "image_key": self.image_key,
            "start": self.start,
            "stop": self.stop,
        }

    def read(self, start, stop):
        import tensorflow_datasets as tfds

        begin, end = self.start + start, self.start + min(stop, len(self))
        dataset = self.builder.as_dataset(split=f"{self.split}[{begin}:{end}]", shuffle_files=False)
        for offset, example in enumerate(tfds.as_numpy(dataset)):
            yield _tfds_id(example, begin + offset), image_lib.load_image(example[self.image_key])


def _prepared_builder(name, split, data_dir, download, manual_dir):
    """A TFDS builder whose `split` is prepared (downloading it if allowed)."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # TFDS raises several types for unknown names
        raise ValueError(f"Unknown TFDS dataset {name!r}: {e}") from e
    if not builder.info.splits and download:
        config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
        builder.download_and_prepare(download_config=config)
    if split.split("[")[0] not in builder.info.splits:
        raise ValueError(
            f"{name} has no prepared split {split!r} under {builder.data_dir} "
            f"(prepared: {list(builder.info.splits)}); prepare it first or allow the download"
        )
    return builder


def _tfds_id(example, index):
    for key in ("image/filename", "image/id", "id"):
        if key in example:
            value = example[key]
            return value.decode() if isinstance(value, bytes) else str(value)
    return str(index)


def _select(items, skip, max_examples):
    _check_positive_int("skip", skip, minimum=0)
    if max_examples is not None:
        _check_positive_int("max_examples", max_examples)
    items = list(items)[skip:]
    items = items if max_examples is None else items[:max_examples]
    if not items:
        raise ValueError(f"No photos left after skipping {skip}")
    return items


def content_source(image_dir=None, tfds_name="coco/2017", **kwargs):
    """`FolderSource(image_dir)` if a folder is given, else `TfdsSource(tfds_name)`."""
    if image_dir:
        kwargs = {k: v for k, v in kwargs.items() if k in ("skip", "max_examples")}
        return FolderSource(image_dir, **kwargs)
    return TfdsSource(tfds_name, **kwargs)


# ----------------------------------------------------------------------------- generation


class PairGenerator:
    """Runs a recipe's slow method on photos, `batch_size` at a time.

    Shared by the TFRecord writer and the TFDS builder, so both produce the
    same pairs. The VGG network and the compiled step are built on first use
    (and cached per process by `keras_style.api`).
    """

    def __init__(self, recipe):
        self.recipe = recipe
        self._stylizer = None
        self._styles = None

    def _setup(self):
        from keras_style.slow import cache

        if self._stylizer is None:
            r = self.recipe
            self._stylizer = cache.get_gatys_stylizer(
                r.loss_config(), r.backbone, r.vgg_weights, r.precision
            )
            self._styles = [image_lib.load_image(f) for f in r.style_files]

    def stylize(self, contents):
        """(N, S, S, 3) float32 crops -> (N, S, S, 3) float32 stylized images."""
        self._setup()
        out, _ = self._stylizer.stylize_batch(
            contents,
            self._styles,
            self.recipe.style_weights,
            self.recipe.optimize_config(),
            verbose=0,
        )
        return out

    def __call__(self, items, on_example=None):
        """Yields (id, uint8 content crop, uint8 stylized) for (id, photo) items, in order."""
        size, batch = self.recipe.image_size, []
        for item_id, photo in items:
            batch.append((item_id, image_lib.center_square(photo, size)))
            if len(batch) == self.recipe.batch_size:
                yield from self._flush(batch, on_example)
                batch = []
        if batch:
            yield from self._flush(batch, on_example)

    def _flush(self, batch, on_example):
        crops = np.stack([crop for _, crop in batch])
        stylized = self.stylize(crops)
        for (item_id, crop), out in zip(batch, stylized, strict=True):
            if on_example:
                on_example()
            yield item_id, image_lib.to_uint8(crop), image_lib.to_uint8(out)


# ----------------------------------------------------------------------------- records


def encode_example(item_id, content, stylized):
    """Serializes one pair (uint8 (S, S, 3) arrays) as a `tf.train.Example`."""
    import tensorflow as tf

    def png(image):
        return tf.io.encode_png(tf.convert_to_tensor(image, tf.uint8)).numpy()

    def feature(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "id": feature(item_id.encode()),
                "content": feature(png(content)),
                "stylized": feature(png(stylized)),
            }
        )
    )
    return example.SerializeToString()


def decode_example(record, image_size):
    """Parses a record into {"id": string, "content", "stylized": float32 (S, S, 3) [0, 255]}."""
    import tensorflow as tf

    spec = {name: tf.io.FixedLenFeature([], tf.string) for name in ("id", "content", "stylized")}
    parsed = tf.io.parse_single_example(record, spec)

    def image(name):
        pixels = tf.io.decode_png(parsed[name], channels=3)
        return tf.cast(tf.ensure_shape(pixels, [image_size, image_size, 3]), tf.float32)

    return {"id": parsed["id"], "content": image("content"), "stylized": image("stylized")}


# ----------------------------------------------------------------------------- card


def shard_layout(num_examples, examples_per_shard):
    """[(file name, start, stop)] of every shard: a fixed function of the two counts."""
    _check_positive_int("examples_per_shard", examples_per_shard)
    total = max(1, math.ceil(num_examples / examples_per_shard))
    return [
        (
            _SHARD_TEMPLATE.format(index=i, total=total),
            i * examples_per_shard,
            min(num_examples, (i + 1) * examples_per_shard),
        )
        for i in range(total)
    ]


def make_card(recipe, source, examples_per_shard):
    """The dataset card: recipe, source, layout and versions (JSON-ready dict)."""
    import tensorflow as tf

    layout = shard_layout(len(source), examples_per_shard)
    return {
        "format_version": FORMAT_VERSION,
        "description": "Content photos and their slow-method (Gatys) stylizations",
        "package_version": keras_style.__version__,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "recipe": recipe.to_json(),
        "content": {
            **source.describe(),
            "preprocessing": "short side resized to image_size (bicubic, antialiased), "
            "central square crop",
        },
        "num_examples": len(source),
        "examples_per_shard": examples_per_shard,
        "shards": [{"file": name, "num_examples": stop - start} for name, start, stop in layout],
        "features": {
            "id": "string: the photo's id in its source",
            "content": "PNG uint8 (image_size, image_size, 3): the cropped photo",
            "stylized": "PNG uint8 (image_size, image_size, 3): the slow method's output",
        },
    }


def write_card(directory, card):
    """Writes the card atomically as indented JSON."""
    return jsonio.write_json(Path(directory) / CARD_NAME, card, sort_keys=True)


def read_card(directory):
    """Reads a dataset folder's card.

    Raises:
        ValueError: if the folder has no readable card of a known format.
    """
    path = Path(directory) / CARD_NAME
    if not path.is_file():
        raise ValueError(f"{directory} is not a stylized dataset: no {CARD_NAME}")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"Corrupt dataset card {path}: {e}") from e
    if card.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {card.get('format_version')}; "
            f"this version of keras_style reads {FORMAT_VERSION}"
        )
    return card


def recipe_identity(card):
    """A card's recipe without its file paths (styles and weights are identified by hash)."""
    recipe = {k: v for k, v in card["recipe"].items() if k not in ("style_files", "vgg_weights")}
    recipe.setdefault("precision", "float32")  # cards written before these options existed
    recipe["optimize"] = {"tile_size": 1024, **recipe.get("optimize", {})}
    return recipe


def _identity(card):
    """The parts of a card that must match for a rerun to continue the same dataset."""
    content = {k: v for k, v in card["content"].items() if k != "image_dir"}
    return json.dumps(
        {**card, "recipe": recipe_identity(card), "content": content, "package_version": None},
        sort_keys=True,
    )


def _check_or_write_card(directory, card):
    path = Path(directory) / CARD_NAME
    if path.is_file():
        existing = read_card(directory)
        if _identity(existing) != _identity(card):
            raise ValueError(
                f"{directory} already holds a different stylized dataset (its {CARD_NAME} "
                "differs in recipe, content or layout); use a new output folder"
            )
        return existing
    write_card(directory, card)
    return card


# ----------------------------------------------------------------------------- writer


def write_stylized_dataset(
    output_dir,
    source,
    recipe,
    *,
    examples_per_shard=32,
    num_workers=1,
    worker_index=0,
    verbose=1,
    on_shard_written=None,
):
    """Generates (or continues) a stylized dataset; returns the card.

    Writes the card first (or checks that an existing one describes the same
    dataset), then every missing shard of this worker: shard `i` is this
    worker's when `i % num_workers == worker_index`. Each shard goes to a
    temporary file that is renamed only when complete.

    Args:
        output_dir: dataset folder (created if needed).
        source: a `FolderSource` or `TfdsSource`.
        recipe: a `SlowRecipe`.
        examples_per_shard: photos per TFRecord file.
        num_workers: how many processes split the shards.
        worker_index: this process's index in [0, num_workers).
        verbose: 1 shows a progress bar with ETA, 0 is silent.
        on_shard_written: optional `fn(path)` after each shard (progress hooks, tests).

    Returns:
        The card (dict).

    Raises:
        ValueError: on bad worker options or a folder holding another dataset.
    """
    _check_positive_int("num_workers", num_workers)
    if not isinstance(worker_index, int) or not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index must be in [0, {num_workers}), got {worker_index!r}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    card = _check_or_write_card(output_dir, make_card(recipe, source, examples_per_shard))
    layout = shard_layout(len(source), examples_per_shard)
    mine = [s for i, s in enumerate(layout) if i % num_workers == worker_index]
    todo = [s for s in mine if not (output_dir / s[0]).is_file()]
    _remove_stale_temporaries(output_dir, [name for name, _, _ in todo])
    bar = _progress(sum(stop - start for _, start, stop in todo), len(mine) - len(todo), verbose)
    generator = PairGenerator(recipe)
    for name, start, stop in todo:
        path = _write_shard(output_dir / name, generator(source.read(start, stop), bar))
        if on_shard_written:
            on_shard_written(path)
    return card


def _progress(total, done_shards, verbose):
    if not verbose:
        return None
    if done_shards:
        print(f"Skipping {done_shards} finished shard(s) of this worker.")
    bar = keras.utils.Progbar(total, unit_name="image")
    return lambda: bar.add(1)


def _remove_stale_temporaries(directory, names):
    """Deletes temporary files that a killed run left for the given (unfinished) shards."""
    for name in names:
        for stale in directory.glob(f".{name}.*"):
            stale.unlink(missing_ok=True)


def _write_shard(path, pairs):
    import tensorflow as tf

    with image_lib.atomic_write(path) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for item_id, content, stylized in pairs:
                writer.write(encode_example(item_id, content, stylized))
    return path


# ----------------------------------------------------------------------------- reader


def missing_shards(directory, card=None):
    """File names listed in the card that are not (yet) in the folder."""
    card = card or read_card(directory)
    return [s["file"] for s in card["shards"] if not (Path(directory) / s["file"]).is_file()]


def load_stylized_dataset(directory, *, shuffle_files=False, seed=None, allow_incomplete=False):
    """Reads a stylized dataset folder as a `tf.data.Dataset` of single examples.

    Args:
        directory: a folder written by `write_stylized_dataset`.
        shuffle_files: read the shards in a random order (training).
        seed: seed of that order.
        allow_incomplete: read whatever shards exist instead of refusing a
            folder whose generation has not finished.

    Returns:
        A dataset of {"id": tf.string, "content": float32 (S, S, 3),
        "stylized": float32 (S, S, 3)}, values in [0, 255], S = the card's
        `recipe.image_size`.

    Raises:
        ValueError: if the folder is not a dataset, or is incomplete and
            `allow_incomplete` is False.
    """
    import tensorflow as tf

    directory = Path(directory)
    card = read_card(directory)
    missing = missing_shards(directory, card)
    if missing and not allow_incomplete:
        raise ValueError(
            f"{directory} is incomplete: {len(missing)} of {len(card['shards'])} shards missing "
            f"(e.g. {missing[0]}); rerun the generation command to finish it"
        )
    files = [str(directory / s["file"]) for s in card["shards"] if s["file"] not in missing]
    if not files:
        raise ValueError(f"{directory} has no finished shard yet")
    size = card["recipe"]["image_size"]
    if shuffle_files:
        names = tf.data.Dataset.from_tensor_slices(files)
        names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        records = names.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(4, len(files)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=seed is not None,
        )
    else:
        records = tf.data.TFRecordDataset(files)  # card order: examples in source order
    return records.map(lambda r: decode_example(r, size), num_parallel_calls=tf.data.AUTOTUNE)


def load_pairs(directory):
    """The whole dataset as numpy arrays: (ids list, contents, stylized), float32 [0, 255].

    For small sets (evaluation, tests); training should stream `load_stylized_dataset`.
    """
    ids, contents, stylized = [], [], []
    for example in load_stylized_dataset(directory).as_numpy_iterator():
        ids.append(example["id"].decode())
        contents.append(example["content"])
        stylized.append(example["stylized"])
    return ids, np.stack(contents), np.stack(stylized)


def card_summary(card):
    """One line describing a card (for logs)."""
    r = card["recipe"]
    return (
        f"{card['num_examples']} pairs at {r['image_size']} px, style "
        f"{[os.path.basename(f) for f in r['style_files']]}, {r['backbone']}, "
        f"{r['optimize']['optimizer']} x {r['optimize']['iterations']}"
    )
