"""TensorBoard scalars and sample images of a training job (TensorFlow's event format).

Points are means over the steps since the previous point (not Keras' running
means), so a resumed run's curve continues the old one.
"""

import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

from keras_style.core import images


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
    """TensorBoard scalars (loss parts, learning rate and speed) and sample images at global steps.

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
            if self.model is not None and self.model.optimizer is not None:
                rate = ops.convert_to_numpy(self.model.optimizer.learning_rate)
                _write_scalar("learning_rate", float(rate))
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
