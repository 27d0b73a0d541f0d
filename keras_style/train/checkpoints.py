"""Atomic checkpoints of a training job: net weights, optimizer state and step, resumable.

`CheckpointManager` writes `checkpoints/ckpt-N/` through a temporary folder
renamed into place (fsynced), so a `kill -9` at any moment leaves only
complete checkpoints; `CheckpointCallback` saves every N steps from `fit`.
"""

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from keras_style.train.distribution import is_chief

_CKPT_RE = re.compile(r"^ckpt-(\d+)$")


class CheckpointManager:
    """Numbered checkpoints of a network and its optimizer, written atomically.

    Each checkpoint is a folder `ckpt-<step>` holding `net.weights.h5`,
    `optimizer.npz` and `state.json`. It is written under a temporary name
    and renamed when complete, so a crash at any moment leaves either the old
    set or the new one, never a half-written checkpoint that resume would
    trust.

    Args:
        directory: where the checkpoint folders live.
        keep: how many of the newest checkpoints to keep.
    """

    def __init__(self, directory, keep=3):
        self.directory = Path(directory)
        self.keep = keep

    def steps(self):
        """Steps of the complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = _CKPT_RE.match(path.name)
            if match and (path / "state.json").is_file():
                found.append(int(match.group(1)))
        return sorted(found)

    def latest(self):
        """Path of the newest complete checkpoint, or None."""
        steps = self.steps()
        return self.directory / f"ckpt-{steps[-1]}" if steps else None

    def save(self, net, optimizer, step):
        """Writes checkpoint `step` (replacing one of the same step) and prunes old ones."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"ckpt-{step}"
        tmp = self.directory / f".tmp-ckpt-{step}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        net.save_weights(tmp / "net.weights.h5")
        variables = {f"v{i:04d}": np.asarray(v) for i, v in enumerate(optimizer.variables)}
        np.savez(tmp / "optimizer.npz", **variables)
        names = [v.path for v in optimizer.variables]
        state = {"step": int(step), "optimizer_variables": names, "time": time.time()}
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(self.directory)
        for old in self.steps()[: -self.keep]:
            shutil.rmtree(self.directory / f"ckpt-{old}", ignore_errors=True)
        return final

    def restore(self, path, net, optimizer):
        """Loads checkpoint `path` into `net` and a built `optimizer`; returns its step."""
        path = Path(path)
        state = json.loads((path / "state.json").read_text())
        net.load_weights(path / "net.weights.h5")
        arrays = np.load(path / "optimizer.npz")
        if len(arrays.files) != len(optimizer.variables):
            raise ValueError(
                f"{path} holds {len(arrays.files)} optimizer variables but the optimizer has "
                f"{len(optimizer.variables)}: was the job's configuration changed?"
            )
        for i, variable in enumerate(optimizer.variables):
            value = arrays[f"v{i:04d}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(f"{path}: optimizer variable {variable.path} changed shape")
            variable.assign(value)
        return int(state["step"])


def _fsync_dir(path):
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class CheckpointCallback(keras.callbacks.Callback):
    """Saves a checkpoint every `every` steps and at the end of training."""

    def __init__(self, manager, every, initial_step):
        super().__init__()
        self.manager = manager
        self.every = every
        self.step = initial_step

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0:
            self._save()

    def on_train_end(self, logs=None):
        if self.step not in self.manager.steps():
            self._save()

    def _save(self):
        model = self.model  # under JAX this syncs the training state into the variables
        if is_chief(getattr(model, "distribute_strategy", None)):
            self.manager.save(model.net, model.optimizer, self.step)
