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
n-th shard into the same folder.

This module holds the card, the writer and the reader; the parts it writes
with are `recipe` (`SlowRecipe`), `sources` (image folder, TFDS), `generator`
(`PairGenerator`, the per-example work, shared with the TFDS builder in
`keras_style.distill.tfds_builder`) and `records` (the TFRecord codec).
"""

import json
import math
import os
from pathlib import Path

import keras
import numpy as np

import keras_style
from keras_style.core import images as image_lib
from keras_style.core import jsonio
from keras_style.distill.generator import PairGenerator
from keras_style.distill.recipe import check_positive_int
from keras_style.distill.records import decode_example, encode_example

#: Version of the record and card layout written by this module.
FORMAT_VERSION = 1


#: Name of the card inside a dataset folder.
CARD_NAME = "dataset_card.json"
_SHARD_TEMPLATE = "stylized-{index:05d}-of-{total:05d}.tfrecord"


def shard_layout(num_examples, examples_per_shard):
    """[(file name, start, stop)] of every shard: a fixed function of the two counts."""
    check_positive_int("examples_per_shard", examples_per_shard)
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
    check_positive_int("num_workers", num_workers)
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
