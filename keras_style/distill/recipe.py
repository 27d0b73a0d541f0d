"""`SlowRecipe`: everything that decides a stylized dataset's images (style, size, slow options).

The recipe is recorded in the dataset card with the hashes of the style and
weight files, so two datasets made with the same recipe can be trained on
together and a dataset can be extended later.
"""

import dataclasses
import hashlib
from pathlib import Path

from keras_style.core import losses, vgg
from keras_style.slow import optimize


@dataclasses.dataclass
class SlowRecipe:
    """Everything that decides the stylized images: style, size and slow-method options.

    Attributes:
        style_files: paths of the style images (several are blended).
        style_weights: one blend weight per style (None: equal).
        image_size: side of the square content crops and stylized images.
        backbone: VGG of the loss network, "vgg19" or "vgg16".
        vgg_weights: "imagenet" or a local weights file.
        loss: `losses.LossConfig` fields (missing ones take their defaults).
        optimize: `optimize.OptimizeConfig` fields; `size` is always
            `image_size` and `init` must be a name ("color_matched",
            "content" or "noise"), not an image.
        batch_size: photos stylized together in one slow-method run
            (L-BFGS shares its line search within a batch, so this is part of
            the recipe).
        precision: compute precision of the loss network, "float32" or
            "bfloat16"; "auto" is resolved on the machine that builds the
            dataset (`vgg.resolve_precision`) and recorded as such.
    """

    style_files: list
    style_weights: list | None = None
    image_size: int = 256
    backbone: str = "vgg19"
    vgg_weights: str = "imagenet"
    loss: dict = dataclasses.field(default_factory=dict)
    optimize: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 1
    precision: str = "auto"

    def __post_init__(self):
        self.precision = vgg.resolve_precision(self.precision)
        self.style_files = [str(f) for f in _as_list(self.style_files)]
        self.vgg_weights = str(self.vgg_weights)
        if not self.style_files:
            raise ValueError("The recipe needs at least one style file")
        for path in self.style_files:
            if not Path(path).is_file():
                raise ValueError(f"Style image not found: {path}")
        if self.style_weights is not None and len(self.style_weights) != len(self.style_files):
            raise ValueError(
                f"Got {len(self.style_weights)} style weights for {len(self.style_files)} styles"
            )
        check_positive_int("image_size", self.image_size, minimum=16)
        check_positive_int("batch_size", self.batch_size)
        if self.optimize.get("size", self.image_size) != self.image_size:
            raise ValueError("Set the output size with image_size, not optimize.size")
        self.loss = dataclasses.asdict(self.loss_config())  # validates, fills defaults
        self.optimize = _optimize_fields(self.optimize_config())

    def loss_config(self):
        """The `losses.LossConfig` of the recipe."""
        try:
            return losses.LossConfig(**self.loss)
        except TypeError as e:
            raise ValueError(f"Unknown loss option in {sorted(self.loss)}: {e}") from e

    def optimize_config(self):
        """The `optimize.OptimizeConfig` of the recipe (size = `image_size`)."""
        options = {**self.optimize, "size": self.image_size}
        if not isinstance(options.get("init", "content"), str):
            raise ValueError("A dataset recipe's init must be a name, e.g. 'content' or 'noise'")
        try:
            return optimize.OptimizeConfig(**options)
        except TypeError as e:
            raise ValueError(f"Unknown optimize option in {sorted(self.optimize)}: {e}") from e

    def to_json(self):
        """JSON-ready fields plus content hashes of the style and weight files."""
        return {
            **dataclasses.asdict(self),
            "style_sha256": [file_sha256(f) for f in self.style_files],
            "vgg_weights_sha256": (
                file_sha256(self.vgg_weights) if Path(self.vgg_weights).is_file() else None
            ),
        }

    @classmethod
    def from_json(cls, fields):
        """Inverse of `to_json` (hashes are dropped; paths must exist here)."""
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {"precision": "float32", **fields}  # cards written before the option existed
        return cls(**{k: v for k, v in fields.items() if k in names})


def _optimize_fields(config):
    fields = dataclasses.asdict(config)
    fields.pop("size")
    return fields


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_positive_int(name, value, minimum=1):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def file_sha256(path):
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
