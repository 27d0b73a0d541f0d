"""A training job of the feed-forward stylizer: work dir, resume, `model.fit`, model.keras.

The parts: `config` (`TrainConfig`), `model` (`StyleTrainer`, `build_trainer`),
`checkpoints`, `summaries` (TensorBoard), `distribution` (strategies) and
`data` (tf.data pipelines). This module runs them as one job.

`train(config)` runs a whole job in a work dir:

    workdir/config.json           the resolved `TrainConfig`
    workdir/data.json             images used and files skipped as unreadable
    workdir/checkpoints/ckpt-N/   net weights, optimizer state, step (atomic)
    workdir/logs/                 TensorBoard scalars and sample images
    workdir/samples/step_N.png    the same samples as files
    workdir/samples.npy           the sample photos (the same in every resumed run)
    workdir/model.keras           the final network
    workdir/runs.json             one record per run: steps, wall time, command

Rerunning the same job after a crash or `kill -9` restores the newest complete
checkpoint (weights, optimizer moments, step count) and trains only the
remaining steps, so it ends at the same step as an uninterrupted run. A photo
folder's stream is entered at the checkpoint's batch (`data.image_folder_dataset`
`start_batch`), so the resumed steps see the photos, crops and flips the
uninterrupted run would have seen.

Scaling out: see `keras_style.train.distribution`.
"""

import json
import logging
import time
from pathlib import Path

import keras
import numpy as np

from keras_style.core import images, jsonio
from keras_style.train import data, distribution
from keras_style.train.checkpoints import CheckpointCallback, CheckpointManager
from keras_style.train.model import build_trainer
from keras_style.train.summaries import SummaryCallback

_log = logging.getLogger(__name__)


def _dataset(config, start_batch):
    """The configured photo stream from batch `start_batch` (where a resumed run continues)."""
    return data.content_dataset(
        image_dir=config.image_dir,
        dataset=config.dataset,
        data_dir=config.data_dir,
        image_size=config.image_size,
        photo_size=config.photo_size,
        batch_size=config.batch_size,
        seed=config.seed,
        start_batch=start_batch,
        **({"validate": config.validate} if config.image_dir else {}),
    )


def total_steps(config, info):
    """Steps the job runs: `steps`, or `epochs` full passes when set."""
    if config.epochs is None:
        return config.steps
    if not info.num_examples:
        raise ValueError(f"--epochs needs a dataset of known size; {info.source} has none")
    return config.epochs * max(1, info.num_examples // config.batch_size)


def _samples(workdir, dataset, count):
    """The preview images: the stream's first `count` images, kept in the work dir.

    A resumed run's stream starts where the last run stopped; the previews
    stay the images the job started with, so samples of every run compare.
    """
    if not count:
        return None
    path = Path(workdir) / "samples.npy"
    if path.is_file():
        kept = np.load(path)
        if len(kept) >= count:
            return kept[:count]
    first = next(iter(dataset))
    content = np.asarray(first[0] if isinstance(first, (tuple, list)) else first)[:count]
    with images.atomic_write(path) as tmp:
        np.save(tmp, content)
    return content


def _check_same_job(workdir, config):
    """Warns when a work dir with checkpoints is reused with a different configuration."""
    path = Path(workdir) / "config.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    changed = sorted(k for k, v in config.to_dict().items() if old.get(k, v) != v)
    if changed:
        _log.warning("Configuration changed since the last run in %s: %s", workdir, changed)


def _record_run(workdir, first_step, last_step, seconds, command, interrupted=False):
    """Appends this run's steps, wall time and command to workdir/runs.json.

    A style trained in several resumed runs keeps the whole story, which
    `fast.styles.bundle_trained_model` copies into the bundled style's card.
    An interrupted run counts up to its newest checkpoint (where the next run
    resumes); its wall time runs to the interruption.
    """
    path = Path(workdir) / "runs.json"
    runs = json.loads(path.read_text()) if path.is_file() else []
    runs.append(
        {
            "from_step": first_step,
            "to_step": last_step,
            "wall_s": round(seconds, 1),
            "command": command,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **({"interrupted": True} if interrupted else {}),
        }
    )
    jsonio.write_json(path, runs)


def train(config, dataset=None, callbacks=(), verbose="auto", command=None):
    """Runs (or resumes) the training job `config`; returns a summary dict.

    Args:
        config: a `TrainConfig`.
        dataset: a tf.data.Dataset replacing the configured photos: repeated
            batches of content images, or of (content, target) pairs for the
            "distill" loss (which has no built-in pipeline); or a function
            `start_batch -> Dataset`, called with the step a resumed run
            continues from, so it can continue the stream rather than replay it.
        callbacks: extra Keras callbacks.
        verbose: `fit` verbosity (1: progress bar with ETA).
        command: the command line that started this run, recorded with its
            steps and wall time in workdir/runs.json.

    Returns:
        {"step", "initial_step", "model_path", "history", "skipped", "replicas"}.
    """
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    workdir = Path(config.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _check_same_job(workdir, config)
    with distribution.distribution_scope(config.strategy, config.batch_size):
        chief = distribution.is_chief()  # in the scope: under multi_worker only one process writes
        replicas = distribution.num_replicas()
        manager = CheckpointManager(workdir / "checkpoints", config.keep_checkpoints)
        latest = manager.latest()
        start_batch = manager.steps()[-1] if latest else 0
        if dataset is None:
            if config.loss == "distill":
                raise ValueError("The distill loss needs a dataset of (content, target) pairs")
            # Entered where the last run stopped: a resumed run sees the batches it would have.
            dataset, info = _dataset(config, start_batch)
        else:
            dataset = dataset(start_batch) if callable(dataset) else dataset
            info = data.DatasetInfo("custom dataset", None)
        steps = total_steps(config, info)
        if chief:
            jsonio.write_json(workdir / "config.json", config.to_dict(), sort_keys=True)
            jsonio.write_json(workdir / "data.json", info.to_json(), sort_keys=True)
        if info.skipped:
            _log.warning("Skipped %d unreadable image files (see data.json)", len(info.skipped))
        trainer = build_trainer(config, total_steps=steps)
        initial_step = manager.restore(latest, trainer.net, trainer.optimizer) if latest else 0
        if latest:
            _log.info("Resumed from %s (step %d of %d)", latest, initial_step, steps)
    history = {}
    started = time.perf_counter()
    if initial_step < steps:
        samples = _samples(workdir, dataset, config.num_samples) if chief else None
        job_callbacks = [CheckpointCallback(manager, config.checkpoint_every, initial_step)]
        if chief:
            job_callbacks.append(
                SummaryCallback(
                    workdir / "logs",
                    initial_step,
                    config.summary_every,
                    samples,
                    config.sample_every,
                    workdir / "samples",
                )
            )
        try:
            result = trainer.fit(
                dataset,
                epochs=1,
                steps_per_epoch=steps - initial_step,
                callbacks=[*job_callbacks, *callbacks],
                verbose=verbose,
            )
        except KeyboardInterrupt:
            saved = max(manager.steps(), default=initial_step)
            if chief and saved > initial_step:  # the steps the next run will not redo
                seconds = time.perf_counter() - started
                _record_run(workdir, initial_step, saved, seconds, command, interrupted=True)
            raise
        history = result.history
    model_path = workdir / "model.keras"
    if chief:
        with images.atomic_write(model_path) as tmp:
            trainer.net.save(tmp)
        if initial_step < steps:
            seconds = time.perf_counter() - started
            _record_run(workdir, initial_step, steps, seconds, command)
    return {
        # Non-chief workers write no checkpoints (and may finish before the chief's last one).
        "step": max(manager.steps(), default=initial_step) if chief else max(steps, initial_step),
        "initial_step": initial_step,
        "model_path": str(model_path),
        "history": history,
        "skipped": len(info.skipped),
        "replicas": replicas,
    }
