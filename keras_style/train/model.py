"""`StyleTrainer`: a `keras.Model` wrapping a `TransformerNet` and a frozen VGG for `fit`.

Its `compute_loss` dispatches on a loss name:

- "perceptual" (Johnson et al. 2016): batches of content images `x`; content
  loss against VGG features of `x`, Gram style loss against targets computed
  once from the style image, total variation.
- "distill": batches of `(content, stylized target)` pairs, e.g. made by the
  slow optimiser; a pixel (L1) loss plus perceptual terms against the
  target's own VGG features (content) and Gram matrices (style), plus total
  variation.

Each loss part is a metric, so the progress bar, history and TensorBoard show
them by name. Everything is `keras.ops` and runs under TensorFlow and JAX;
importing this module does not import TensorFlow.
"""

import contextlib
from pathlib import Path

import keras
import numpy as np
from keras import ops

from keras_style.core import images, losses, vgg
from keras_style.core.transformer_net import build_transformer_net
from keras_style.train.config import LOSSES


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
        painting_style_weight: "distill": weight of the Gram distance to the
            painting (`style_targets`), the perceptual loss's style term (the
            hybrid recipe); 0 leaves it out.
        ssim_weight: "distill": weight of 1 - SSIM to the target (`losses.ssim`);
            0 leaves it out.
        **kwargs: passed to `keras.Model` (e.g. `dtype="mixed_float16"`).
    """

    def __init__(
        self,
        net,
        perceptual_loss,
        style_targets=None,
        loss="perceptual",
        pixel_weight=1.0,
        painting_style_weight=0.0,
        ssim_weight=0.0,
        **kw,
    ):
        super().__init__(**kw)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if loss == "perceptual" and not style_targets:
            raise ValueError("The perceptual loss needs style_targets")
        if painting_style_weight > 0 and not style_targets:
            raise ValueError("painting_style_weight > 0 needs style_targets (the painting's Grams)")
        self.net = net
        self.vgg = perceptual_loss.extractor.model
        self.perceptual_loss = perceptual_loss
        self.loss_name = loss
        self.pixel_weight = float(pixel_weight)
        self.painting_style_weight = float(painting_style_weight) if loss == "distill" else 0.0
        self.ssim_weight = float(ssim_weight) if loss == "distill" else 0.0
        self.style_targets = {
            name: np.asarray(value, dtype="float32")
            for name, value in (style_targets or {}).items()
        }
        self.part_names = (
            ("content_loss", "style_loss", "tv_loss")
            if loss == "perceptual"
            else ("pixel_loss", "content_loss", "style_loss", "tv_loss")
        )
        if loss == "perceptual" and perceptual_loss.config.tone_weight > 0:
            self.part_names += ("tone_loss",)
        if self.painting_style_weight > 0:
            self.part_names += ("painting_style_loss",)
        if self.ssim_weight > 0:
            self.part_names += ("ssim_loss",)
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
        low = self.perceptual_loss.low_precision_grams
        target_features = extractor(target, native_dtype=low)
        target_grams = {n: losses.gram_matrix(target_features[n], low) for n in config.style_layers}
        features = extractor(stylized, native_dtype=low)
        content = {
            name: losses.as_float32(f, config.content_layers)
            for name, f in (("target", target_features), ("output", features))
        }
        parts = {
            "pixel_loss": ops.mean(ops.abs(stylized - target)) / 255.0,
            "content_loss": ops.mean(
                losses.content_loss(content["output"], content["target"], config.content_layers)
            ),
            "style_loss": ops.mean(
                losses.style_loss(features, target_grams, config.style_layers, low)
            ),
            "tv_loss": ops.mean(losses.total_variation(stylized)),
        }
        total = (
            self.pixel_weight * parts["pixel_loss"]
            + config.content_weight * parts["content_loss"]
            + config.style_weight * parts["style_loss"]
            + config.tv_weight * parts["tv_loss"]
        )
        if self.painting_style_weight > 0:
            painting = {k: ops.convert_to_tensor(v) for k, v in self.style_targets.items()}
            parts["painting_style_loss"] = ops.mean(
                losses.style_loss(features, painting, config.style_layers, low)
            )
            total = total + self.painting_style_weight * parts["painting_style_loss"]
        if self.ssim_weight > 0:
            parts["ssim_loss"] = 1.0 - ops.mean(losses.ssim(stylized, target))
            total = total + self.ssim_weight * parts["ssim_loss"]
        return total, parts


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


def copy_weights(source, net):
    """Starts `net` from the weights of `source`.

    `source` is a `.keras` path, a bundled style name, or a checkpoint folder
    of a training work dir (`checkpoints/ckpt-N`, whose `net.weights.h5` it
    reads), so a new job (another schedule or loss) can start from any step
    of an earlier one.

    Raises:
        ValueError: if `source` cannot be loaded or its network differs from
            `net` (another width, head or architecture).
    """
    from keras_style.fast import styles

    checkpoint = Path(source) / "net.weights.h5"
    if checkpoint.is_file():
        try:
            net.load_weights(checkpoint)
        except ValueError as e:
            raise ValueError(
                f"init_from={source!r} is a checkpoint of a different network from the one "
                f"configured; use the same width and head ({e})"
            ) from e
        return
    model = styles.resolve_model(source)
    weights = model.get_weights()
    shapes = [w.shape for w in weights]
    wanted = [tuple(v.shape) for v in net.weights]
    if [tuple(s) for s in shapes] != wanted:
        raise ValueError(
            f"init_from={source!r} is a different network ({len(shapes)} weights) from the one "
            f"configured ({len(wanted)} weights); use the same width and head"
        )
    net.set_weights([np.asarray(w, "float32") for w in weights])


def build_optimizer(config, total_steps=None):
    """Adam at `config.learning_rate`, constant or cosine-decayed over `total_steps`.

    The schedule reads the optimizer's step counter, which checkpoints save
    with Adam's moments, so a resumed job continues the same curve.

    Args:
        config: a `TrainConfig` (`learning_rate`, `lr_schedule`, `lr_final_fraction`).
        total_steps: steps of the whole job (default `config.steps`).
    """
    rate = config.learning_rate
    if config.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            rate, decay_steps=int(total_steps or config.steps), alpha=config.lr_final_fraction
        )
    return keras.optimizers.Adam(rate)


def build_trainer(config, style_image=None, total_steps=None):
    """Builds the network, loss and compiled `StyleTrainer` for `config` (in the current scope).

    Args:
        config: a `TrainConfig`.
        style_image: a [0, 255] style image, overriding `config.style_image`.
        total_steps: steps of the whole job, the length of a decaying learning
            rate (default `config.steps`; `train` passes it when `epochs` is set).

    Returns:
        The compiled `StyleTrainer`, its optimizer built (ready for restore).
    """
    loss_config = config.loss_config()
    extractor = vgg.FeatureExtractor(
        loss_config.layers, config.backbone, config.vgg_weights, config.loss_precision
    )
    perceptual = losses.PerceptualLoss(
        extractor, loss_config, low_precision_grams=extractor.precision != "float32"
    )
    targets = None
    if config.loss == "perceptual" or config.painting_style_weight > 0:
        if style_image is None and not config.style_image:
            raise ValueError("painting_style_weight > 0 needs a style_image (the painting)")
        if style_image is None:
            style_image = load_style_image(config.style_image, config.style_size)
        targets = {k: np.asarray(v) for k, v in perceptual.style_targets([style_image]).items()}
    if config.seed is not None:
        # The network's initial weights then depend on the seed alone, not on the random
        # draws the loss network made while it was built (they differ with its precision).
        keras.utils.set_random_seed(config.seed)
    policy = config.dtype_policy()
    with dtype_policy(policy):
        net = build_transformer_net(config.width, head=config.head)
    if config.init_from:
        copy_weights(config.init_from, net)
    trainer = StyleTrainer(
        net,
        perceptual,
        targets,
        loss=config.loss,
        pixel_weight=config.pixel_weight,
        painting_style_weight=config.painting_style_weight,
        ssim_weight=config.ssim_weight,
        dtype=policy,
    )
    trainer.compile(optimizer=build_optimizer(config, total_steps), jit_compile=config.jit_compile)
    trainer.optimizer.build(trainer.trainable_variables)
    return trainer
