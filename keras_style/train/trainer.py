"""Training the feed-forward stylizer with `model.fit`: trainer model, work dir, resume.

`StyleTrainer` is a `keras.Model` wrapping a `TransformerNet` and a frozen VGG
whose `compute_loss` dispatches on a loss name:

- "perceptual" (Johnson et al. 2016): batches of content images `x`; content
  loss against VGG features of `x`, Gram style loss against targets computed
  once from the style image, total variation.
- "distill": batches of `(content, stylized target)` pairs, e.g. made by the
  slow optimiser; a pixel (L1) loss plus perceptual terms against the
  target's own VGG features (content) and Gram matrices (style), plus total
  variation.

Each loss part is a metric, so the progress bar, history and TensorBoard show
them by name. Everything is `keras.ops` and runs under TensorFlow and JAX.

`train(config)` runs a whole job in a work dir:

    workdir/config.json           the resolved `TrainConfig`
    workdir/data.json             images used and files skipped as unreadable
    workdir/checkpoints/ckpt-N/   net weights, optimizer state, step (atomic)
    workdir/logs/                 TensorBoard scalars and sample images
    workdir/samples/step_N.png    the same samples as files
    workdir/model.keras           the final network

Rerunning the same job after a crash or `kill -9` restores the newest complete
checkpoint (weights, optimizer moments, step count) and trains only the
remaining steps, so it ends at the same step as an uninterrupted run.

Scaling out (`TrainConfig.strategy`, see `distribution_scope`): "mirrored"
trains one replica per local GPU (`tf.distribute.MirroredStrategy` under
TensorFlow, `keras.distribution.DataParallel` under JAX), "multi_worker" one
per worker of a TF_CONFIG cluster (MultiWorkerMirroredStrategy; under JAX,
`keras.distribution.initialize()`); `batch_size` is the global batch. Only
the chief writes the work dir. Without GPUs, `split_cpu_devices(N)` or the
environment variable KERAS_STYLE_CPU_DEVICES=N (applied by the training
binaries, like their --cpu_devices=N) splits the CPU into N devices to test
this on one machine:

    KERAS_STYLE_CPU_DEVICES=2 python -m training.train --strategy=mirrored ...
"""

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

from keras_style.core import images, jsonio, losses, vgg
from keras_style.core.jsonio import read_preset
from keras_style.core.transformer_net import HEADS, WIDTHS, build_transformer_net
from keras_style.train import data

LOSSES = ("perceptual", "distill")
STRATEGIES = ("default", "mirrored", "multi_worker")

#: Compute precisions of the network being trained -> Keras dtype policies. Variables
#: (the weights that are saved, and Adam's moments) stay float32 in all of them.
NET_PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
CPU_DEVICES_ENV = "KERAS_STYLE_CPU_DEVICES"

_CKPT_RE = re.compile(r"^ckpt-(\d+)$")
_log = logging.getLogger("keras_style.train.trainer")


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training job; saved as JSON in the work dir.

    Attributes:
        workdir: output folder (checkpoints, logs, samples, model.keras).
        style_image: the style image path ("perceptual" loss).
        loss: "perceptual" or "distill".
        image_dir: folder of content photos; when empty, `dataset` is used.
        dataset: TFDS name of the content photos.
        data_dir: TFDS data folder.
        image_size: side of the square training crops.
        batch_size: global batch size (split across replicas).
        steps: training steps; ignored when `epochs` is set.
        epochs: passes over the photos (needs a known dataset size).
        learning_rate: Adam learning rate.
        content_weight, style_weight, tv_weight: loss weights (scale-free,
            see `keras_style.core.losses`). In "distill" the style term is the
            Gram distance to each target's own Grams (its strokes' statistics).
        pixel_weight: weight of the L1 pixel loss ("distill").
        pair_flip: "distill": mirror half the training pairs left-right.
        pair_crop_step: "distill": training crop offsets are multiples of
            this (16 keeps them on VGG's pooling grid; see `keras_style.distill.training`).
        content_layers, style_layers: {VGG layer: weight}; None = defaults.
        style_size: long side the style image is resized to (None: as is).
        backbone: "vgg19" or "vgg16".
        vgg_weights: "imagenet", a local weights file, or None (random, tests).
        width: network width multiplier (1.0, 0.5, 0.25).
        head: the network's output head, "tanh" (the paper's), "clip"
            (straight-through clip: no saturated region stops learning,
            see `layers.StraightThroughClip`) or "residual" (the photo plus
            a clipped change, initially the identity: for distillation).
        net_precision: compute precision of the network being trained (see
            `NET_PRECISIONS`): "float32", "bfloat16" (for CPUs with bfloat16
            units and GPUs; no loss scaling needed) or "float16" (GPUs, with
            loss scaling). Weights and optimizer state stay float32, and
            checkpoints and model.keras hold float32 weights either way.
        mixed_precision: legacy switch for net_precision="float16".
        loss_precision: compute precision of the frozen VGG loss network,
            "auto" (bfloat16 on GPUs and CPUs with bfloat16 instructions),
            "float32" or "bfloat16" (see `vgg.resolve_precision`).
        strategy: "default", "mirrored" or "multi_worker".
        jit_compile: True, False or "auto" (passed to `compile`).
        checkpoint_every: steps between checkpoints.
        keep_checkpoints: newest checkpoints kept.
        summary_every: steps between TensorBoard scalars.
        sample_every: steps between sample images (0: never).
        num_samples: sample images shown.
        validate: image check mode of image folders ("full", "header", "none").
        seed: random seed (weights, data order); None: not repeatable.
    """

    workdir: str = "runs/default"
    style_image: str | None = None
    loss: str = "perceptual"
    image_dir: str | None = None
    dataset: str = "coco/2017"
    data_dir: str | None = None
    image_size: int = 256
    batch_size: int = 4
    steps: int = 40000
    epochs: int | None = None
    learning_rate: float = 1e-3
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 1.0
    pixel_weight: float = 1.0
    pair_flip: bool = True
    pair_crop_step: int = 1
    content_layers: dict | None = None
    style_layers: dict | None = None
    style_size: int | None = 512
    backbone: str = "vgg19"
    vgg_weights: str | None = "imagenet"
    width: float = 1.0
    head: str = "tanh"
    net_precision: str = "float32"
    mixed_precision: bool = False
    loss_precision: str = "auto"
    strategy: str = "default"
    jit_compile: bool | str = "auto"
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    summary_every: int = 100
    sample_every: int = 500
    num_samples: int = 4
    validate: str = "full"
    seed: int | None = None

    def __post_init__(self):
        self._check_choice("loss", LOSSES)
        self._check_choice("strategy", STRATEGIES)
        self._check_choice("backbone", vgg.BACKBONES)
        self._check_choice("validate", data.VALIDATE_MODES)
        self._check_choice("loss_precision", vgg.PRECISIONS)
        self._check_choice("head", HEADS)
        self._check_choice("net_precision", tuple(NET_PRECISIONS))
        if self.mixed_precision and self.net_precision not in ("float32", "float16"):
            raise ValueError(
                f"mixed_precision=True means net_precision='float16'; it conflicts with "
                f"net_precision={self.net_precision!r}"
            )
        if self.width not in WIDTHS:
            raise ValueError(f"width must be one of {WIDTHS}, got {self.width!r}")
        for name in (
            "image_size",
            "batch_size",
            "steps",
            "checkpoint_every",
            "keep_checkpoints",
            "pair_crop_step",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("summary_every", "sample_every", "num_samples"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.loss == "perceptual" and not self.style_image:
            raise ValueError("The perceptual loss needs a style_image")

    def _check_choice(self, name, choices):
        if getattr(self, name) not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, values):
        """Builds a config from a dict, rejecting unknown keys with a clear message."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown config keys {unknown}; known keys: {sorted(known)}")
        return cls(**values)

    @classmethod
    def from_json(cls, path, **overrides):
        """Reads a JSON preset (e.g. configs/starry_night.json), then applies `overrides`."""
        return cls.from_dict({**read_preset(path), **overrides})

    def replace(self, **overrides):
        """A copy with some fields changed (validated again)."""
        return self.from_dict({**dataclasses.asdict(self), **overrides})

    def to_dict(self):
        return dataclasses.asdict(self)

    def dtype_policy(self):
        """The Keras dtype policy the network trains under."""
        return NET_PRECISIONS["float16" if self.mixed_precision else self.net_precision]

    def loss_config(self):
        """The `losses.LossConfig` these settings describe."""
        kwargs = {
            "content_weight": self.content_weight,
            "style_weight": self.style_weight,
            "tv_weight": self.tv_weight,
        }
        if self.content_layers:
            kwargs["content_layers"] = dict(self.content_layers)
        if self.style_layers:
            kwargs["style_layers"] = dict(self.style_layers)
        return losses.LossConfig(**kwargs)


def _scale_for_replicas(loss):
    """Divides by the replica count under tf.distribute, as Keras' own losses do."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            return loss / replicas
    return loss


def _tf_multi_worker(model):
    """True when `model` trains under tf.distribute with several workers."""
    if keras.backend.backend() != "tensorflow":
        return False
    extended = getattr(model.distribute_strategy, "extended", None)
    return bool(getattr(extended, "_in_multi_worker_mode", lambda: False)())


class StyleTrainer(keras.Model):
    """Wraps a stylization network with its training loss for `fit`.

    Args:
        net: the network to train (e.g. a `TransformerNet`); `call` runs it.
        perceptual_loss: a `losses.PerceptualLoss` (its VGG is tracked here so
            its weights travel as non-trainable state under JAX).
        style_targets: {layer: Gram matrix} from `PerceptualLoss.style_targets`
            (needed for "perceptual").
        loss: "perceptual" (data: content batches) or "distill" (data:
            (content, target) batches).
        pixel_weight: weight of the L1 pixel loss in "distill", in units of
            (pixels / 255).
        **kwargs: passed to `keras.Model` (e.g. `dtype="mixed_float16"`).
    """

    def __init__(
        self, net, perceptual_loss, style_targets=None, loss="perceptual", pixel_weight=1.0, **kw
    ):
        super().__init__(**kw)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if loss == "perceptual" and not style_targets:
            raise ValueError("The perceptual loss needs style_targets")
        self.net = net
        self.vgg = perceptual_loss.extractor.model
        self.perceptual_loss = perceptual_loss
        self.loss_name = loss
        self.pixel_weight = float(pixel_weight)
        self.style_targets = {
            name: np.asarray(value, dtype="float32")
            for name, value in (style_targets or {}).items()
        }
        self.part_names = (
            ("content_loss", "style_loss", "tv_loss")
            if loss == "perceptual"
            else ("pixel_loss", "content_loss", "style_loss", "tv_loss")
        )
        for name in self.part_names:
            setattr(self, f"{name}_tracker", keras.metrics.Mean(name=name))

    def call(self, inputs, training=False):
        return self.net(inputs, training=training)

    def train_step(self, *args, **kwargs):
        logs = super().train_step(*args, **kwargs)
        if _tf_multi_worker(self):
            # Keras 3 averages the step's logs across workers with
            # strategy.reduce("MEAN", value, axis=0), which fails on scalars
            # (tensorflow/tensorflow#72388); a batch axis of 1 makes it the mean.
            logs = {name: ops.reshape(value, (1,)) for name, value in logs.items()}
        return logs

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Weighted total of the named parts; each part is also recorded as a metric."""
        del sample_weight, training
        if self.loss_name == "perceptual":
            total, parts = self._perceptual(x, y_pred)
        else:
            if y is None:
                raise ValueError("The distill loss needs (content, target) batches")
            total, parts = self._distill(y, y_pred)
        for name, value in parts.items():
            getattr(self, f"{name}_tracker").update_state(value)
        return _scale_for_replicas(total)

    def _perceptual(self, content, stylized):
        targets = self.perceptual_loss.content_targets(ops.convert_to_tensor(content, "float32"))
        style = {k: ops.convert_to_tensor(v) for k, v in self.style_targets.items()}
        return self.perceptual_loss(ops.cast(stylized, "float32"), targets, style)

    def _distill(self, target, stylized):
        stylized = ops.cast(stylized, "float32")
        target = ops.convert_to_tensor(target, "float32")
        config = self.perceptual_loss.config
        extractor = self.perceptual_loss.extractor
        target_features = extractor(target)
        target_grams = {n: losses.gram_matrix(target_features[n]) for n in config.style_layers}
        features = extractor(stylized)
        parts = {
            "pixel_loss": ops.mean(ops.abs(stylized - target)) / 255.0,
            "content_loss": ops.mean(
                losses.content_loss(features, target_features, config.content_layers)
            ),
            "style_loss": ops.mean(losses.style_loss(features, target_grams, config.style_layers)),
            "tv_loss": ops.mean(losses.total_variation(stylized)),
        }
        total = (
            self.pixel_weight * parts["pixel_loss"]
            + config.content_weight * parts["content_loss"]
            + config.style_weight * parts["style_loss"]
            + config.tv_weight * parts["tv_loss"]
        )
        return total, parts


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


def is_chief(strategy=None):
    """True in the process that writes files (the only one unless multi-worker).

    Args:
        strategy: the `tf.distribute` strategy of the job (e.g. a model's
            `distribute_strategy`); None: the current one. Keras 3 runs `fit`
            and its callbacks outside the strategy scope, so callbacks must
            pass the model's.
    """
    if keras.backend.backend() == "jax":
        import jax

        return jax.process_index() == 0
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return _tf_config_chief()  # outside a multi-worker scope: ask TF_CONFIG
    return _chief_task(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())


def _chief_task(task_type, task_id, cluster):
    """The chief writes: task "chief", or worker 0 of a cluster without one."""
    return task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in cluster
    )


def _tf_config_chief():
    """`is_chief` from the TF_CONFIG environment variable (True when unset or unreadable)."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        task = config.get("task") or {}
    except (ValueError, AttributeError):
        return True
    if not task.get("type"):
        return True
    return _chief_task(task["type"], int(task.get("index", 0)), config.get("cluster") or {})


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


def _plugin_metadata(plugin):
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin
    return metadata


def _write_scalar(tag, value):
    """`tf.summary.scalar` without the tensorboard package (same event format)."""
    import tensorflow as tf

    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=_plugin_metadata("scalars"))


def _write_images(tag, batch):
    """`tf.summary.image` for a uint8 (N, H, W, 3) batch, without the tensorboard package."""
    import tensorflow as tf

    height, width = batch.shape[1:3]
    pngs = [tf.io.encode_png(image) for image in batch]
    tensor = tf.stack([tf.constant(str(width)), tf.constant(str(height)), *pngs])
    tf.summary.write(tag, tensor, metadata=_plugin_metadata("images"))


class SummaryCallback(keras.callbacks.Callback):
    """TensorBoard scalars (loss parts, learning speed) and sample images at global steps.

    Keras' own TensorBoard callback counts steps from zero on every run; this
    one continues from the restored step so resumed curves line up. Keras'
    batch logs are running means since the start of the run (what the progress
    bar shows); each point written here is the mean of the steps since the
    previous point instead, so a curve shows the loss at that step and does
    not jump when a resumed run starts a new running mean.
    """

    def __init__(
        self, logdir, initial_step, every=100, samples=None, sample_every=0, sample_dir=None
    ):
        super().__init__()
        import tensorflow as tf

        self.tf = tf
        self.writer = tf.summary.create_file_writer(str(logdir))
        self.step = initial_step
        self.every = every
        self.samples = samples
        self.sample_every = sample_every
        self.sample_dir = Path(sample_dir) if sample_dir else None
        self._last = (time.time(), initial_step)
        self._sums = (0, {})  # (batches, running mean x batches) at the last point

    def on_epoch_begin(self, epoch, logs=None):
        self._sums = (0, {})  # Keras restarts its running means with every epoch

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.every and self.step % self.every == 0:
            self._scalars(self._window_means(batch + 1, logs or {}))
        if self.sample_every and self.samples is not None and self.step % self.sample_every == 0:
            self._images()

    def on_train_end(self, logs=None):
        if self.samples is not None:
            self._images()
        self.writer.flush()

    def _window_means(self, batches, running_means):
        """Means over the batches since the last point, from running means over `batches`."""
        last_batches, last_sums = self._sums
        sums = {name: float(value) * batches for name, value in running_means.items()}
        self._sums = (batches, sums)
        count = max(batches - last_batches, 1)
        return {name: (total - last_sums.get(name, 0.0)) / count for name, total in sums.items()}

    def _scalars(self, logs):
        now = time.time()
        steps_per_s = (self.step - self._last[1]) / max(now - self._last[0], 1e-9)
        self._last = (now, self.step)
        with self.writer.as_default(step=self.step):
            for name, value in logs.items():
                _write_scalar(name, float(value))
            _write_scalar("steps_per_second", steps_per_s)
        self.writer.flush()

    def _images(self):
        # A direct call: under tf.distribute, predict_on_batch runs the whole batch on every
        # replica and concatenates the copies.
        stylized = self.model.net(self.samples, training=False)
        stylized = images.to_uint8(ops.convert_to_numpy(ops.cast(stylized, "float32")))
        pair = np.concatenate([images.to_uint8(self.samples), stylized], axis=2)
        with self.writer.as_default(step=self.step):
            _write_images("samples", pair)
        if self.sample_dir:
            self.sample_dir.mkdir(parents=True, exist_ok=True)
            grid = np.concatenate(list(pair), axis=0)
            images.save_image(grid, self.sample_dir / f"step_{self.step:08d}.png")


def split_cpu_devices(count=None):
    """Splits the host CPU into `count` devices, to run the multi-device strategies without GPUs.

    With `count` devices, "mirrored" trains `count` replicas on one machine
    (each replica gets batch_size / count images; the CPU cores are shared,
    so this is for testing, not speed). Must run before the backend sets up
    its devices, i.e. before any op runs (the training binaries call it
    first, from --cpu_devices or the KERAS_STYLE_CPU_DEVICES environment
    variable).

    TensorFlow: `count` logical CPU devices. JAX: the `jax_num_cpu_devices`
    option (like XLA_FLAGS=--xla_force_host_platform_device_count=N).

    Args:
        count: number of CPU devices; None reads KERAS_STYLE_CPU_DEVICES;
            None, 0 or 1 change nothing.

    Returns:
        The count applied, or 0 when nothing was changed.

    Raises:
        RuntimeError: when the backend's devices are already set up.
    """
    if count is None:
        value = os.environ.get(CPU_DEVICES_ENV, "").strip()
        try:
            count = int(value) if value else 0
        except ValueError as e:
            raise ValueError(f"{CPU_DEVICES_ENV} must be an integer, got {value!r}") from e
    count = int(count)
    if count < 0:
        raise ValueError(f"The CPU device count must be >= 0, got {count}")
    if count <= 1:
        return 0
    too_late = (
        f"Cannot split the CPU into {count} devices: the {keras.backend.backend()} runtime is "
        "already initialized; call split_cpu_devices first thing in the program"
    )
    if keras.backend.backend() == "jax":
        import jax

        if _jax_initialized() and len(jax.devices("cpu")) == count:
            return count
        try:
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError as e:
            raise RuntimeError(too_late) from e
    else:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * count
            )
        except RuntimeError as e:
            if len(tf.config.list_logical_devices("CPU")) != count:
                raise RuntimeError(too_late) from e
    _log.info("Split the host CPU into %d devices", count)
    return count


def _jax_initialized():
    try:
        from jax._src import xla_bridge

        return xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):
        return False


def num_replicas():
    """Replicas each global batch is split across, in the current strategy/distribution."""
    if keras.backend.backend() == "jax":
        distribution = keras.distribution.distribution()
        return int(np.size(distribution.device_mesh.devices)) if distribution else 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def _mirrored_devices():
    """Devices MirroredStrategy mirrors over: all GPUs, else all CPUs when split (None: CPU:0)."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return [device.name for device in gpus]
    cpus = tf.config.list_logical_devices("CPU")
    return [device.name for device in cpus] if len(cpus) > 1 else None


def distribution_scope(strategy, batch_size=None):
    """A context in which to build models for `strategy` (see `STRATEGIES`).

    TensorFlow: a `tf.distribute` strategy scope: "mirrored" is a
    MirroredStrategy over all local GPUs, or when there are none over all
    logical CPU devices (see `split_cpu_devices`); "multi_worker" a
    MultiWorkerMirroredStrategy from TF_CONFIG. JAX: sets a
    `keras.distribution.DataParallel` distribution over all devices
    (`keras.distribution.initialize()` first for "multi_worker"); it stays
    set after the context, as `fit` needs it. The replica count is logged.

    Args:
        strategy: one of `STRATEGIES`.
        batch_size: the global batch size; under JAX it must divide evenly
            among the devices (checked when given).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy == "default":
        return contextlib.nullcontext()
    if keras.backend.backend() == "jax":
        if strategy == "multi_worker":
            keras.distribution.initialize()
        devices = keras.distribution.list_devices()
        if batch_size is not None and batch_size % len(devices):
            raise ValueError(
                f"batch_size {batch_size} must be divisible by the number of devices "
                f"({len(devices)}: {devices}) for --strategy={strategy} under JAX"
            )
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        _log.info(
            "Strategy %s: keras.distribution.DataParallel, %d replicas %s",
            strategy,
            len(devices),
            devices,
        )
        return contextlib.nullcontext()
    import tensorflow as tf

    if strategy == "mirrored":
        tf_strategy = tf.distribute.MirroredStrategy(devices=_mirrored_devices())
    else:
        tf_strategy = tf.distribute.MultiWorkerMirroredStrategy()
    _log.info(
        "Strategy %s: %s, %d replicas %s",
        strategy,
        type(tf_strategy).__name__,
        tf_strategy.num_replicas_in_sync,
        list(tf_strategy.extended.worker_devices),
    )
    return tf_strategy.scope()


@contextlib.contextmanager
def dtype_policy(name):
    """Temporarily sets Keras' global dtype policy (e.g. "mixed_float16")."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def load_style_image(path, style_size=None):
    """The style image in the package's convention, its long side resized to `style_size`."""
    image = images.load_image(path)
    if style_size:
        image = images.resize(image, images.fit_size(image.shape, long_side=style_size))
    return image


def build_trainer(config, style_image=None):
    """Builds the network, loss and compiled `StyleTrainer` for `config` (in the current scope).

    Args:
        config: a `TrainConfig`.
        style_image: a [0, 255] style image, overriding `config.style_image`.

    Returns:
        The compiled `StyleTrainer`, its optimizer built (ready for restore).
    """
    loss_config = config.loss_config()
    extractor = vgg.FeatureExtractor(
        loss_config.layers, config.backbone, config.vgg_weights, config.loss_precision
    )
    perceptual = losses.PerceptualLoss(extractor, loss_config)
    targets = None
    if config.loss == "perceptual":
        if style_image is None:
            style_image = load_style_image(config.style_image, config.style_size)
        targets = {k: np.asarray(v) for k, v in perceptual.style_targets([style_image]).items()}
    policy = config.dtype_policy()
    with dtype_policy(policy):
        net = build_transformer_net(config.width, head=config.head)
    trainer = StyleTrainer(
        net,
        perceptual,
        targets,
        loss=config.loss,
        pixel_weight=config.pixel_weight,
        dtype=policy,
    )
    trainer.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate), jit_compile=config.jit_compile
    )
    trainer.optimizer.build(trainer.trainable_variables)
    return trainer


def _dataset(config):
    return data.content_dataset(
        image_dir=config.image_dir,
        dataset=config.dataset,
        data_dir=config.data_dir,
        image_size=config.image_size,
        batch_size=config.batch_size,
        seed=config.seed,
        **({"validate": config.validate} if config.image_dir else {}),
    )


def total_steps(config, info):
    """Steps the job runs: `steps`, or `epochs` full passes when set."""
    if config.epochs is None:
        return config.steps
    if not info.num_examples:
        raise ValueError(f"--epochs needs a dataset of known size; {info.source} has none")
    return config.epochs * max(1, info.num_examples // config.batch_size)


def _samples(dataset, count):
    """The first `count` content images of the stream, for preview images."""
    if not count:
        return None
    first = next(iter(dataset))
    content = first[0] if isinstance(first, (tuple, list)) else first
    return np.asarray(content)[:count]


def _check_same_job(workdir, config):
    """Warns when a work dir with checkpoints is reused with a different configuration."""
    path = Path(workdir) / "config.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    changed = sorted(k for k, v in config.to_dict().items() if old.get(k, v) != v)
    if changed:
        _log.warning("Configuration changed since the last run in %s: %s", workdir, changed)


def train(config, dataset=None, callbacks=(), verbose="auto"):
    """Runs (or resumes) the training job `config`; returns a summary dict.

    Args:
        config: a `TrainConfig`.
        dataset: a tf.data.Dataset replacing the configured photos: repeated
            batches of content images, or of (content, target) pairs for the
            "distill" loss (which has no built-in pipeline).
        callbacks: extra Keras callbacks.
        verbose: `fit` verbosity (1: progress bar with ETA).

    Returns:
        {"step", "initial_step", "model_path", "history", "skipped", "replicas"}.
    """
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    workdir = Path(config.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _check_same_job(workdir, config)
    with distribution_scope(config.strategy, config.batch_size):
        chief = is_chief()  # in the scope: under multi_worker only one process writes
        replicas = num_replicas()
        if dataset is None:
            if config.loss == "distill":
                raise ValueError("The distill loss needs a dataset of (content, target) pairs")
            dataset, info = _dataset(config)
        else:
            info = data.DatasetInfo("custom dataset", None)
        steps = total_steps(config, info)
        if chief:
            jsonio.write_json(workdir / "config.json", config.to_dict(), sort_keys=True)
            jsonio.write_json(workdir / "data.json", info.to_json(), sort_keys=True)
        if info.skipped:
            _log.warning("Skipped %d unreadable image files (see data.json)", len(info.skipped))
        trainer = build_trainer(config)
        manager = CheckpointManager(workdir / "checkpoints", config.keep_checkpoints)
        latest = manager.latest()
        initial_step = manager.restore(latest, trainer.net, trainer.optimizer) if latest else 0
        if latest:
            _log.info("Resumed from %s (step %d of %d)", latest, initial_step, steps)
    history = {}
    if initial_step < steps:
        samples = _samples(dataset, config.num_samples)
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
        result = trainer.fit(
            dataset,
            epochs=1,
            steps_per_epoch=steps - initial_step,
            callbacks=[*job_callbacks, *callbacks],
            verbose=verbose,
        )
        history = result.history
    model_path = workdir / "model.keras"
    if chief:
        with images.atomic_write(model_path) as tmp:
            trainer.net.save(tmp)
    return {
        # Non-chief workers write no checkpoints (and may finish before the chief's last one).
        "step": max(manager.steps(), default=initial_step) if chief else max(steps, initial_step),
        "initial_step": initial_step,
        "model_path": str(model_path),
        "history": history,
        "skipped": len(info.skipped),
        "replicas": replicas,
    }
