"""`OptimizeConfig`: the slow path's option group, shared by `stylize()` and the CLI.

Kept free of Keras and NumPy so that `keras-style` can read its defaults
(for its flags) without loading either; `keras_style.slow.optimize` uses it.
"""

import dataclasses
import numbers

OPTIMIZERS = ("lbfgs", "adam")

#: Default iterations per optimizer. L-BFGS: 160 reaches, at a strong stylization (style
#: weight 150, 384 px, Starry Night), the Gram-style distance of 300 plain Adam steps in
#: under a third of their time (`docs/gatys_benchmark.md`); 130, the earlier default, fell
#: just short of it there.
DEFAULT_ITERATIONS = {"lbfgs": 160, "adam": 300}
INITS = ("color_matched", "content", "noise")


@dataclasses.dataclass
class OptimizeConfig:
    """Options of the iterative stylizer (besides the loss configuration).

    Attributes:
        size: long side of the output in pixels; None keeps the content's size.
        iterations: optimizer iterations at the coarsest pyramid level (each
            finer level runs half as many; without a pyramid, all of them).
        optimizer: "lbfgs" or "adam".
        learning_rate: Adam step size, in pixel units.
        init: "color_matched" (the photo recoloured to the paintings' colour
            mean and covariance, `images.match_colors`: measured at 384 px it
            reaches a 4 % lower Gram-style distance in the same iterations),
            "content", "noise", or an image (anything `load_image` takes).
        seed: seed for the noise initialisation (None: random).
        style_scale: style image long side relative to the output's long side.
        multiscale: optimise coarse to fine (see `pyramid_sizes`).
        preserve_color: keep the content's colours (luminance-only transfer).
        tile_size: a pyramid level whose long side exceeds this many pixels
            computes its loss and gradient in tiles: VGG sees windows of at
            most about this size (interiors plus a halo of VGG context, see
            `tiled_loss.TiledLoss`). Same result, memory about that of an
            untiled `tile_size` level, about 1.5-2x the compute; None never tiles.
    """

    size: int | None = 512
    iterations: int = DEFAULT_ITERATIONS["lbfgs"]
    optimizer: str = "lbfgs"
    learning_rate: float = 5.0
    init: object = "color_matched"
    seed: int | None = None
    style_scale: float = 1.0
    multiscale: bool = True
    preserve_color: bool = False
    tile_size: int | None = 1024

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        if isinstance(self.init, str) and self.init not in INITS:
            raise ValueError(f"Unknown init {self.init!r}; use one of {INITS} or an image")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.size is not None and self.size < 16:
            raise ValueError(f"size must be at least 16 pixels, got {self.size}")
        if not self.style_scale > 0:
            raise ValueError(f"style_scale must be > 0, got {self.style_scale}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.tile_size is not None and not (
            isinstance(self.tile_size, numbers.Integral) and self.tile_size >= 64
        ):
            raise ValueError(f"tile_size must be an integer >= 64 or None, got {self.tile_size!r}")


#: The defaults, read by `stylize()` and the `keras-style stylize` flags.
DEFAULTS = OptimizeConfig()
