"""Scaling a training job out: strategies, replicas, the chief, CPU devices for tests.

`TrainConfig.strategy` "mirrored" trains one replica per local GPU
(`tf.distribute.MirroredStrategy` under TensorFlow,
`keras.distribution.DataParallel` under JAX), "multi_worker" one per worker of
a TF_CONFIG cluster (MultiWorkerMirroredStrategy; under JAX,
`keras.distribution.initialize()`); `batch_size` is the global batch. Only the
chief writes the work dir. Without GPUs, `split_cpu_devices(N)` or the
environment variable KERAS_STYLE_CPU_DEVICES=N (applied by the training
binaries, like their --cpu_devices=N) splits the CPU into N devices to test
this on one machine:

    KERAS_STYLE_CPU_DEVICES=2 python -m training.train --strategy=mirrored ...
"""

import contextlib
import json
import logging
import os

import keras
import numpy as np

from keras_style.train.config import STRATEGIES

_log = logging.getLogger(__name__)

CPU_DEVICES_ENV = "KERAS_STYLE_CPU_DEVICES"


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
