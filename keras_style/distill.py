"""Distillation: train the fast network to reproduce the slow method's outputs.

The project's original recipe. `keras_style.stylized_dataset` holds photos and
their slow-method stylizations; this module turns such a dataset into
training batches of (content, target) pairs and runs the perceptual trainer
(`keras_style.trainer.train`) with its "distill" loss: L1 pixel distance to
the target plus VGG terms against the target's own features and Gram
matrices (weights `pixel_weight`, `content_weight` and `style_weight` of the
`TrainConfig`), plus total variation. Work dir,
checkpoints and resume, TensorBoard, progress bar and `--strategy` are the
trainer's; nothing here duplicates them.

Augmentations are drawn once per pair and applied to both images (a random
crop at the same offset, the same flip), so the target always matches the
content pixel for pixel.
"""

import json
from pathlib import Path

import tensorflow as tf

from keras_style import images as image_lib
from keras_style import stylized_dataset, trainer


def joint_augment(content, target, crop_size, seed=None):
    """The same random crop and horizontal flip for a (S, S, 3) content image and its target."""
    pair = tf.concat([content, target], axis=-1)
    pair = tf.image.random_crop(pair, [crop_size, crop_size, 6], seed=seed)
    pair = tf.image.random_flip_left_right(pair, seed=seed)
    return pair[..., :3], pair[..., 3:]


def pair_dataset(
    directory, crop_size, batch_size, *, augment=True, repeat=True, shuffle_buffer=256, seed=None
):
    """Batches of (content, target) pairs from a stylized dataset, for `fit`.

    Args:
        directory: a folder written by `stylized_dataset.write_stylized_dataset`.
        crop_size: side of the training crops (at most the dataset's image size).
        batch_size: pairs per batch (the last partial batch is dropped).
        augment: random crops and flips, identical for content and target;
            False takes central crops.
        repeat: cycle forever (training).
        shuffle_buffer: examples buffered for shuffling (decoded images).
        seed: makes the order and the augmentations repeatable.

    Returns:
        (tf.data.Dataset of ((B, C, C, 3), (B, C, C, 3)) float32 [0, 255], card).

    Raises:
        ValueError: on an incomplete dataset or a crop larger than its images.
    """
    card = stylized_dataset.read_card(directory)
    size = card["recipe"]["image_size"]
    if not 16 <= crop_size <= size:
        raise ValueError(f"crop_size must be in [16, {size}] for this dataset, got {crop_size}")
    if batch_size > card["num_examples"] and not repeat:
        raise ValueError(f"batch_size {batch_size} exceeds the {card['num_examples']} pairs")
    examples = stylized_dataset.load_stylized_dataset(directory, shuffle_files=True, seed=seed)
    examples = examples.map(lambda e: (e["content"], e["stylized"]))
    examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        examples = examples.repeat()
    if augment:
        pairs = examples.map(
            lambda c, t: joint_augment(c, t, crop_size, seed), num_parallel_calls=tf.data.AUTOTUNE
        )
    else:
        offset = (size - crop_size) // 2
        window = slice(offset, offset + crop_size)
        pairs = examples.map(lambda c, t: (c[window, window], t[window, window]))
    batches = pairs.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return batches, card


def distill(config, dataset_dir, callbacks=(), verbose="auto"):
    """Trains (or resumes training) a fast network on a stylized dataset.

    Args:
        config: a `trainer.TrainConfig`; `loss` is set to "distill",
            `image_size` is the crop size, `pixel_weight`/`content_weight`/
            `style_weight`/`tv_weight` weigh the loss parts.
        dataset_dir: the stylized dataset folder.
        callbacks: extra Keras callbacks.
        verbose: `fit` verbosity.

    Returns:
        The summary of `trainer.train`, plus "dataset": the card summary.
    """
    config = config.replace(loss="distill")
    pairs, card = pair_dataset(dataset_dir, config.image_size, config.batch_size, seed=config.seed)
    workdir = Path(config.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if trainer.is_chief():
        record = {"stylized_dataset": str(Path(dataset_dir).resolve()), "card": card}
        with image_lib.atomic_write(workdir / "distill_dataset.json") as tmp:
            tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    summary = trainer.train(config, dataset=pairs, callbacks=callbacks, verbose=verbose)
    return {**summary, "dataset": stylized_dataset.card_summary(card)}
