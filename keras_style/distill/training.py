"""Distillation: train the fast network to reproduce the slow method's outputs.

The project's original recipe. `keras_style.distill.dataset` holds photos and
their slow-method stylizations; this module turns such a dataset into
training batches of (content, target) pairs and runs the perceptual trainer
(`keras_style.train.trainer.train`) with its "distill" loss: L1 pixel distance to
the target plus VGG terms against the target's own features and Gram
matrices (weights `pixel_weight`, `content_weight` and `style_weight` of the
`TrainConfig`), optionally 1 - SSIM to the target (`ssim_weight`), plus
total variation. Work dir,
checkpoints and resume, TensorBoard, progress bar and `--strategy` are the
trainer's; nothing here duplicates them.

Augmentations are drawn once per pair and applied to both images (a random
crop at the same offset, the same flip), so the target always matches the
content pixel for pixel. Both are options (`TrainConfig.pair_flip`,
`pair_crop_step`) because the slow method is neither mirror- nor
shift-invariant: run on a mirrored photo, its strokes land elsewhere (SSIM
to the unmirrored run, mirrored back, about that of the unchanged photo), and
VGG's pooling makes its strokes follow a 16-pixel grid. A mirrored or
arbitrarily shifted pair therefore teaches the network a stroke placement
that differs from the one it is measured against; offsets in steps of 16
and no flips keep every pair consistent.
"""

import json
from pathlib import Path

import tensorflow as tf

from keras_style.core import jsonio
from keras_style.distill import dataset as stylized_dataset
from keras_style.train import data, distribution, trainer


def joint_augment(content, target, crop_size, key, flip=True, crop_step=1):
    """The same random crop (and flip) for a (S, S, 3) content image and its target.

    Args:
        content, target: (S, S, 3) float32 images.
        crop_size: side of the crop.
        key: the stateless random key ((2,) integer tensor) of the crop and
            the flip: the same key gives the same crop, whatever the order in
            which a parallel `map` reaches the pairs.
        flip: also mirror the pair left-right half of the time.
        crop_step: crop offsets are multiples of this (1: any offset).
    """
    crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    pair = tf.concat([content, target], axis=-1)
    size = tf.shape(pair)[0]
    if crop_step == 1:
        pair = tf.image.stateless_random_crop(pair, [crop_size, crop_size, 6], seed=crop_key)
    else:
        positions = (size - crop_size) // crop_step + 1
        draw = tf.random.stateless_uniform([2], crop_key, 0, positions, tf.int32)
        top, left = tf.unstack(crop_step * draw)
        pair = tf.ensure_shape(
            pair[top : top + crop_size, left : left + crop_size], [crop_size, crop_size, 6]
        )
    if flip:
        pair = tf.image.stateless_random_flip_left_right(pair, seed=flip_key)
    return pair[..., :3], pair[..., 3:]


def _as_dirs(directories):
    """One folder or a list of folders -> list of strings."""
    if isinstance(directories, (str, Path)):
        return [str(directories)]
    dirs = [str(d) for d in directories]
    if not dirs:
        raise ValueError("no stylized dataset given")
    return dirs


def read_cards(directories):
    """The cards of one or several stylized datasets that train together.

    Several datasets must share one recipe (the same style, slow-method
    options, size and loss network: the network learns one mapping) and
    hold different photos (a folder given twice would weigh its pairs double).

    Raises:
        ValueError: naming the folder whose recipe differs or that repeats one.
    """
    dirs = _as_dirs(directories)
    cards = [stylized_dataset.read_card(d) for d in dirs]
    first = stylized_dataset.recipe_identity(cards[0])
    seen = {}
    for directory, card in zip(dirs, cards, strict=True):
        if stylized_dataset.recipe_identity(card) != first:
            raise ValueError(
                f"{directory} was made with a different recipe than {dirs[0]}; "
                "datasets that train together must share style, options and size"
            )
        content = json.dumps({k: v for k, v in card["content"].items() if k != "image_dir"})
        if content in seen:
            raise ValueError(f"{directory} holds the same photos as {seen[content]}")
        seen[content] = directory
    return cards


def _examples(dirs, cards, repeat, shuffle_buffer, seed):
    """(content, stylized) examples of all folders, shuffled and mixed by their sizes."""
    parts = []
    for directory in dirs:
        examples = stylized_dataset.load_stylized_dataset(directory, shuffle_files=True, seed=seed)
        examples = examples.map(lambda e: (e["content"], e["stylized"]))
        examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        parts.append(examples.repeat() if repeat else examples)
    if len(parts) == 1:
        return parts[0]
    total = sum(card["num_examples"] for card in cards)
    weights = [card["num_examples"] / total for card in cards]
    return tf.data.Dataset.sample_from_datasets(parts, weights, seed=seed)


def check_crop_size(cards, crop_size):
    """Returns the datasets' image size; raises ValueError if `crop_size` does not fit in it."""
    size = cards[0]["recipe"]["image_size"]
    if not 16 <= crop_size <= size:
        raise ValueError(f"crop_size must be in [16, {size}] for this dataset, got {crop_size}")
    return size


def pair_dataset(
    directories,
    crop_size,
    batch_size,
    *,
    augment=True,
    flip=True,
    crop_step=1,
    repeat=True,
    shuffle_buffer=256,
    seed=None,
    start_batch=0,
):
    """Batches of (content, target) pairs from one or several stylized datasets, for `fit`.

    Args:
        directories: a folder written by `stylized_dataset.write_stylized_dataset`,
            or a list of such folders made with the same recipe (e.g. a
            dataset grown later with more photos); pairs are drawn from each
            in proportion to its size.
        crop_size: side of the training crops (at most the dataset's image size).
        batch_size: pairs per batch (the last partial batch is dropped).
        augment: random crops (and flips), identical for content and target;
            False takes central crops.
        flip: with `augment`, mirror half the pairs left-right.
        crop_step: with `augment`, crop offsets are multiples of this.
        repeat: cycle forever (training).
        shuffle_buffer: examples buffered for shuffling (decoded images), per folder.
        seed: makes the order and the augmentations repeatable.
        start_batch: a resumed run's first step. Nonzero starts a fresh stream
            keyed by (seed, start_batch), so a resumed run does not replay
            the pairs and crops its first run began with; the same
            (seed, start_batch) gives the same stream. (Entering the shuffled
            stream exactly at a batch would mean reading every pair before it.)

    Returns:
        (tf.data.Dataset of ((B, C, C, 3), (B, C, C, 3)) float32 [0, 255],
        list of the folders' cards).

    Raises:
        ValueError: on an incomplete dataset, datasets with different
            recipes, or a crop larger than the images.
    """
    dirs = _as_dirs(directories)
    cards = read_cards(dirs)
    size = check_crop_size(cards, crop_size)
    total = sum(card["num_examples"] for card in cards)
    if batch_size > total and not repeat:
        raise ValueError(f"batch_size {batch_size} exceeds the {total} pairs")
    data.check_start_batch(start_batch, repeat)
    seed = data.seed_or_random(seed) + start_batch
    examples = _examples(dirs, cards, repeat, shuffle_buffer, seed)
    if augment:

        def crop(index, pair):
            # Keyed by (seed, position in the stream): repeatable under a parallel map.
            key = tf.stack([tf.constant(seed, tf.int64), index])
            return joint_augment(*pair, crop_size, key, flip, crop_step)

        pairs = examples.enumerate().map(crop, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        offset = (size - crop_size) // 2
        window = slice(offset, offset + crop_size)
        pairs = examples.map(lambda c, t: (c[window, window], t[window, window]))
    batches = pairs.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return batches, cards


def _dataset_painting(cards):
    """The one painting the datasets were stylized with (the hybrid recipe's style term)."""
    files = {f for card in cards for f in card["recipe"]["style_files"]}
    if len(files) != 1:
        raise ValueError(
            f"painting_style_weight needs one painting; the datasets blend {sorted(files)}: "
            "pass style_image"
        )
    (path,) = files
    if not Path(path).is_file():
        raise ValueError(f"The datasets' painting {path} is not there: pass style_image")
    return path


def distill(config, dataset_dirs, callbacks=(), verbose="auto"):
    """Trains (or resumes training) a fast network on stylized datasets.

    Args:
        config: a `TrainConfig`; `loss` is set to "distill",
            `image_size` is the crop size, `pixel_weight`/`content_weight`/
            `style_weight`/`tv_weight` weigh the loss parts and
            `painting_style_weight` adds the perceptual style term (the hybrid
            recipe; the painting is `style_image`, or the datasets' own).
        dataset_dirs: the stylized dataset folder, or a list of folders made
            with the same recipe (see `pair_dataset`).
        callbacks: extra Keras callbacks.
        verbose: `fit` verbosity.

    Returns:
        The summary of `trainer.train`, plus "dataset": the cards' summaries.
    """
    config = config.replace(loss="distill")
    dirs = _as_dirs(dataset_dirs)
    cards = read_cards(dirs)
    check_crop_size(cards, config.image_size)  # before any file is written

    def pairs(start_batch):
        """The pair stream of a run that starts (or resumes) at `start_batch`."""
        batches, _ = pair_dataset(
            dirs,
            config.image_size,
            config.batch_size,
            flip=config.pair_flip,
            crop_step=config.pair_crop_step,
            seed=config.seed,
            start_batch=start_batch,
        )
        return batches

    if config.painting_style_weight > 0 and not config.style_image:
        config = config.replace(style_image=_dataset_painting(cards))
    workdir = Path(config.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if distribution.is_chief():
        record = {
            "stylized_datasets": [str(Path(d).resolve()) for d in dirs],
            "cards": cards,
        }
        jsonio.write_json(workdir / "distill_dataset.json", record, sort_keys=True)
    summary = trainer.train(config, dataset=pairs, callbacks=callbacks, verbose=verbose)
    return {**summary, "dataset": "; ".join(stylized_dataset.card_summary(c) for c in cards)}
