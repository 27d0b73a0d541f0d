"""The slow path (Gatys et al.): optimise the pixels of an image against a frozen VGG.

Targets are computed once per pyramid level; the update loop then only runs
one compiled "loss and gradient" function: `tf.GradientTape` inside a
`tf.function` under TensorFlow, `jax.value_and_grad` under `jax.jit` under
JAX. Two optimizers:

* L-BFGS (default, as in the reference implementations): `keras_style.slow.lbfgs`,
  box-constrained to [0, 255], one evaluation per iteration.
* Adam: `keras.optimizers.Adam` on the image, clipped after every step.

The loss network computes in bfloat16 where the hardware supports it
(`vgg.resolve_precision`), and the first level starts from the photo
recoloured to the painting's palette (`init="color_matched"`). Large outputs
are optimised coarse to fine: each level starts from the upsampled result of
the previous one, so the finest (most expensive) level needs few iterations;
levels above `tile_size` compute their loss in tiles (`tiled_loss`), so a
2048 px result fits in a few GB.
"""

import keras
import numpy as np
from keras import ops

from keras_style.core import backend, losses
from keras_style.core import images as image_lib
from keras_style.slow import lbfgs, tiled_loss
from keras_style.slow.options import INITS as INITS
from keras_style.slow.options import OPTIMIZERS as OPTIMIZERS
from keras_style.slow.options import OptimizeConfig as OptimizeConfig

#: Coarsest pyramid level used by `pyramid_sizes` (long side, pixels). Measured at 384 px:
#: starting from an upsampled coarse result costs more fine-level iterations than it
#: saves, so pyramids are kept for large outputs, where each finer level runs half the
#: iterations of the one before (`level_iterations`) and most of the work is cheap.
MIN_PYRAMID_SIZE = 512


def pyramid_sizes(size, multiscale=True):
    """Long sides of the coarse-to-fine levels, e.g. 2048 -> [512, 1024, 2048].

    Halves `size` while the result stays at least `MIN_PYRAMID_SIZE`.
    """
    sizes = [int(size)]
    while multiscale and sizes[0] // 2 >= MIN_PYRAMID_SIZE:
        sizes.insert(0, sizes[0] // 2)
    return sizes


def level_iterations(iterations, num_levels):
    """Iterations per pyramid level, coarsest first: each finer level gets half as many."""
    return [max(1, iterations >> i) for i in range(num_levels)]


class Reporter:
    """Progress bar plus the user's callback and intermediate saving, once per iteration."""

    def __init__(self, total, verbose=1, callback=None, callback_every=10):
        self.bar = keras.utils.Progbar(total, verbose=verbose) if verbose else None
        self.callback, self.every = callback, max(1, int(callback_every))
        self.step = 0
        self.evaluations = 0  # loss-and-gradient evaluations, for benchmarks
        self.last_parts = {}

    def __call__(self, image_fn, total, parts):
        self.step += 1
        self.last_parts = {"loss": float(total), **{k: float(v) for k, v in parts.items()}}
        if self.bar:
            self.bar.update(self.step, list(self.last_parts.items()))
        if self.callback and self.step % self.every == 0:
            self.callback(self.step, image_fn(), dict(self.last_parts))


def run_adam(step, x0, targets, iterations, learning_rate, report):
    """Adam on the pixels, clipped to [0, 255] after every update."""
    x = keras.Variable(x0, dtype="float32", trainable=True, name="image")
    optimizer = keras.optimizers.Adam(learning_rate)
    for _ in range(iterations):
        total, parts, grad = step(x.value, *targets)
        optimizer.apply([grad], [x])
        x.assign(ops.clip(x.value, 0.0, 255.0))
        report.evaluations += 1
        report(lambda: ops.convert_to_numpy(x.value)[0], total, parts)
    return ops.convert_to_numpy(x.value)


#: RMS pixel change (in [0, 255] units) of L-BFGS's first step, before any curvature is
#: known (measured at 384 px: 0.5 to 8 give the same result; a unit step in raw pixel
#: units, SciPy's default, moves each pixel by ~0.002 and stalls the line search).
FIRST_STEP_RMS = 2.0

#: Curvature pairs L-BFGS keeps. Measured at 384 px (Starry Night, 120 iterations):
#: 50 pairs reach the Gram-style distance that 10 pairs need 130 iterations for;
#: 100 pairs gain nothing more.
LBFGS_HISTORY = 50

#: Memory budget of the curvature pairs (two float32 copies of the image per pair): large
#: outputs keep fewer pairs (a 2048 px image keeps 8), so they still fit in a few GB.
LBFGS_MEMORY_BYTES = 512 * 2**20


def lbfgs_history(num_values):
    """Curvature pairs kept for `num_values` pixels: `LBFGS_HISTORY` within the memory budget."""
    return int(max(3, min(LBFGS_HISTORY, LBFGS_MEMORY_BYTES // (8 * max(1, num_values)))))


def run_lbfgs(step, x0, targets, iterations, report):
    """L-BFGS on the pixels inside the [0, 255] box (`keras_style.slow.lbfgs`).

    Args:
        step: the compiled `step(x, *targets) -> (total, parts, grad)`.
        x0: float32 starting batch (N, H, W, 3).
        targets: the step's extra arguments.
        iterations: L-BFGS iterations (one evaluation each, plus rare
            backtracking).
        report: a `Reporter`, called after every iteration.

    Returns:
        The optimised float32 batch.
    """
    latest = {}

    def fun(x):
        total, parts, grad = step(ops.convert_to_tensor(x), *targets)
        latest.update(total=total, parts=parts)
        return float(total), ops.convert_to_numpy(grad)

    def callback(x):
        report(lambda: x[0].copy(), latest["total"], latest["parts"])

    result = lbfgs.minimize(
        fun,
        np.asarray(x0, np.float32),
        iterations,
        history=lbfgs_history(np.size(x0)),
        first_step_rms=FIRST_STEP_RMS,
        callback=callback,
    )
    report.evaluations += result.evaluations
    return result.x


def initial_image(init, content, seed, styles=(), style_weights=None):
    """The starting point at the first pyramid level (content-sized).

    Args:
        init: see `OptimizeConfig.init`.
        content: the [0, 255] RGB photo at this level's size.
        seed: seed of the "noise" init.
        styles, style_weights: the paintings and their blend weights (for
            "color_matched").
    """
    if isinstance(init, str) and init == "color_matched":
        return image_lib.match_colors(content, styles, style_weights)
    if isinstance(init, str) and init == "content":
        return content
    if isinstance(init, str) and init == "noise":
        rng = np.random.default_rng(seed)
        return rng.uniform(0.0, 255.0, content.shape).astype(np.float32)
    image = image_lib.load_image(init)
    return image_lib.resize(image, content.shape[:2])


class GatysStylizer:
    """Iterative style transfer with a fixed loss network, reusable across images.

    Args:
        extractor: a `vgg.FeatureExtractor` exposing the loss's layers.
        loss_config: a `losses.LossConfig`.
    """

    def __init__(self, extractor, loss_config=None):
        self.loss = losses.PerceptualLoss(extractor, loss_config)
        self.variables = list(extractor.model.variables)
        self.step = backend.compile_value_and_grad(self._loss_fn, self.variables)
        self._tiled_losses = {}  # tile_size -> tiled_loss.TiledLoss, built on first use

    def _loss_fn(self, x, content_targets, style_targets):
        """The batch's summed loss (so each sample gets its own-size gradient); mean reported."""
        total, parts = self.loss(x, content_targets, style_targets)
        return total * ops.cast(ops.shape(x)[0], "float32"), {**parts, "loss": total}

    def stylize(self, content, styles, style_weights=None, config=None, **reporting):
        """Stylizes one content image.

        Args:
            content: [0, 255] RGB (H, W, 3) float32 array.
            styles: list of [0, 255] RGB style images.
            style_weights: blend weights, one per style (None: equal).
            config: an `OptimizeConfig`.
            **reporting: `verbose`, `callback(step, image, parts)`, `callback_every`.

        Returns:
            (image, parts): the stylized (H', W', 3) float32 image, long side
            `config.size`, and the final unweighted loss parts.
        """
        images, parts = self.stylize_batch(
            np.asarray(content, np.float32)[None], styles, style_weights, config, **reporting
        )
        return images[0], parts

    def stylize_batch(self, contents, styles, style_weights=None, config=None, **reporting):
        """Stylizes a batch of same-sized content images in one optimization.

        The samples are independent (content targets per sample, Gram targets
        broadcast), so one optimizer on the *sum* of the per-sample losses
        equals N separate problems for Adam. L-BFGS shares its line search
        and curvature pairs across the batch, so results are close to, not
        identical with, one-at-a-time runs. Batching pays off when one image
        leaves the CPU/GPU idle.

        Args:
            contents: [0, 255] RGB array shaped (N, H, W, 3), or a list of
                (H, W, 3) arrays of the same shape.
            styles, style_weights, config, **reporting: as in `stylize`.

        Returns:
            (images, parts): float32 (N, H', W', 3) stylized images, long side
            `config.size`, and the final unweighted loss parts (batch means).

        Raises:
            ValueError: if `contents` is not a non-empty batch of equal-sized images.
        """
        contents = _as_batch(contents)
        config = config or OptimizeConfig()
        levels = pyramid_sizes(config.size or max(contents.shape[1:3]), config.multiscale)
        counts = level_iterations(config.iterations, len(levels))
        report = Reporter(sum(counts), **reporting)
        x = level_contents = None
        for long_side, iterations in zip(levels, counts, strict=True):
            shape = image_lib.fit_size(contents.shape[1:3], long_side=long_side)
            previous_contents = level_contents
            level_contents = np.stack([image_lib.resize(c, shape) for c in contents])
            x = _start(x, previous_contents, level_contents, config, styles, style_weights)
            tiled = self._tiled_loss(shape, config)
            targets = self._targets(level_contents, styles, style_weights, long_side, config, tiled)
            x = self._optimize(x, targets, config, iterations, report, tiled)
        if config.preserve_color:
            x = ops.convert_to_numpy(image_lib.transfer_luminance(x, level_contents))
        self.evaluations = report.evaluations  # of the last run, for benchmarks
        return np.clip(x, 0.0, 255.0).astype(np.float32), report.last_parts

    def _tiled_loss(self, shape, config):
        """The `tiled_loss.TiledLoss` for a level of this (H, W), or None if it fits untiled."""
        if config.tile_size is None or max(shape) <= config.tile_size:
            return None
        if config.tile_size not in self._tiled_losses:
            self._tiled_losses[config.tile_size] = tiled_loss.TiledLoss(
                self.loss, self.variables, config.tile_size
            )
        return self._tiled_losses[config.tile_size]

    def _targets(self, level_contents, styles, style_weights, long_side, config, tiled=None):
        style_side = max(16, round(long_side * config.style_scale))
        scaled = [
            image_lib.resize(s, image_lib.fit_size(s.shape, long_side=style_side)) for s in styles
        ]
        if tiled is not None:
            return tiled.content_targets(level_contents), tiled.style_targets(scaled, style_weights)
        content_targets = self.loss.content_targets(ops.convert_to_tensor(level_contents))
        return content_targets, self.loss.style_targets(scaled, style_weights)

    def _optimize(self, x, targets, config, iterations, report, tiled=None):
        x0 = np.asarray(x, np.float32)
        step = self.step if tiled is None else tiled.step
        if config.optimizer == "adam":
            return run_adam(step, x0, targets, iterations, config.learning_rate, report)
        return run_lbfgs(step, x0, targets, iterations, report)


#: Whether a new pyramid level starts with the content's missing detail added back.
ADD_CONTENT_DETAIL = True


def _start(previous, previous_contents, level_contents, config, styles, style_weights):
    """Starting batch of a pyramid level.

    The first level starts from `config.init`. A finer level starts from the
    upsampled result of the coarser one plus the detail that upsampling lost
    from the photo (finer content minus upsampled coarser content), like one
    step of a Laplacian pyramid: edges the coarse level could not represent
    come back at once instead of being re-learnt by the optimizer.
    """
    shape = level_contents.shape[1:3]
    if previous is None:
        return np.stack(
            [
                initial_image(config.init, c, config.seed, styles, style_weights)
                for c in level_contents
            ]
        )
    upsampled = np.stack([image_lib.resize(p, shape) for p in previous])
    if ADD_CONTENT_DETAIL:
        blurred = np.stack([image_lib.resize(c, shape) for c in previous_contents])
        upsampled = np.clip(upsampled + (level_contents - blurred), 0.0, 255.0)
    return upsampled.astype(np.float32)


def _as_batch(contents):
    """A non-empty (N, H, W, 3) float32 batch from an array or a list of equal-sized images."""
    if isinstance(contents, (list, tuple)):
        shapes = {np.shape(c) for c in contents}
        if len(shapes) > 1:
            raise ValueError(f"stylize_batch needs images of one size; got shapes {sorted(shapes)}")
        contents = np.stack(contents) if contents else np.zeros((0,))
    contents = np.asarray(contents, np.float32)
    if contents.ndim != 4 or contents.shape[0] == 0 or contents.shape[-1] != 3:
        raise ValueError(
            f"stylize_batch needs a non-empty (N, H, W, 3) batch; got shape {contents.shape}"
        )
    return contents
