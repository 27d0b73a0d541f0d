"""`TrainConfig`: every setting of a training job, validated, saved as the work dir's config.json.

Presets in `configs/` are JSON objects of these fields; the training binaries'
flags override them (`training/flags_common.py` quotes these defaults).
"""

import dataclasses

from keras_style.core import losses, vgg
from keras_style.core.jsonio import read_preset
from keras_style.core.transformer_net import HEADS, WIDTHS

#: Image checks of `data.scan_image_files` (`TrainConfig.validate`, --validate).
VALIDATE_MODES = ("full", "header", "none")

LOSSES = ("perceptual", "distill")

#: Learning-rate schedules (`TrainConfig.lr_schedule`, `model.build_optimizer`).
LR_SCHEDULES = ("constant", "cosine")


STRATEGIES = ("default", "mirrored", "multi_worker")


#: Compute precisions of the network being trained -> Keras dtype policies. Variables
#: (the weights that are saved, and Adam's moments) stay float32 in all of them.
NET_PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
#: Accepted `TrainConfig.net_precision` values: "auto" resolves like the loss network's.
NET_PRECISION_CHOICES = ("auto", *NET_PRECISIONS)


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
        photo_size: short side photos are resized to before cropping (None:
            `image_size`, crops span the short side). Larger values show
            objects at the scale of larger photos; in a 300-step trial on the
            bundled great_wave it did not help (docs/bundled_styles.md).
        batch_size: global batch size (split across replicas).
        steps: training steps; ignored when `epochs` is set.
        epochs: passes over the photos (needs a known dataset size).
        learning_rate: Adam learning rate (the starting rate under "cosine").
        lr_schedule: "constant", or "cosine": the rate decays along a half
            cosine from `learning_rate` to `learning_rate * lr_final_fraction`
            over the job's steps (counted by the optimizer, so a resumed run
            continues the curve; a run started with `init_from` starts it anew).
            Small final steps settle the network instead of leaving it where the
            last constant-rate step threw it.
        lr_final_fraction: "cosine": the last rate as a fraction of the first.
        content_weight, style_weight, tv_weight: loss weights (scale-free,
            see `keras_style.core.losses`). In "distill" the style term is the
            Gram distance to each target's own Grams (its strokes' statistics).
        tone_weight, tone_scale: the tone term of the perceptual loss (keeps
            light and dark where the photo has them; see `losses.LossConfig`).
        pixel_weight: weight of the L1 pixel loss ("distill").
        ssim_weight: "distill": weight of 1 - SSIM to the target
            (`losses.ssim`, the measure of closeness to the slow method the
            quality reports use); 0 leaves it out.
        painting_style_weight: "distill" only: weight of the perceptual
            style term, the Gram distance to the painting (`style_image` at
            `style_size`; `distill.training.distill` takes the dataset's own
            painting when `style_image` is empty). With it the loss is the
            hybrid recipe: imitate the slow outputs and match the painting's
            statistics as the perceptual loss does.
        pair_flip: "distill": mirror half the training pairs left-right.
        pair_crop_step: "distill": training crop offsets are multiples of
            this (16 keeps them on VGG's pooling grid; see `keras_style.distill.training`).
        content_layers, style_layers: {VGG layer: weight}; None = defaults.
        style_size: long side the style image is resized to (None: as is).
        backbone: "vgg19" or "vgg16".
        vgg_weights: "imagenet", a local weights file, or None (random, tests).
        width: network width multiplier (1.0, 0.5, 0.25).
        init_from: a `.keras` file, bundled style name or checkpoint folder
            (`<workdir>/checkpoints/ckpt-N`) whose weights start
            the network (same width and head), to continue or refine a
            trained style with other settings (crop size, painting size,
            weights); None: random initialisation. A resumed work dir
            restores its own checkpoint instead.
        head: the network's output head, "tanh" (the paper's), "clip"
            (straight-through clip: no saturated region stops learning,
            see `layers.StraightThroughClip`) or "residual" (the photo plus
            a clipped change, initially the identity: for distillation).
        net_precision: compute precision of the network being trained (see
            `NET_PRECISIONS`): "auto" (default: "bfloat16" where
            `vgg.resolve_precision` finds it fast, i.e. GPUs and CPUs with
            AMX or AMD's AVX512_BF16, else "float32"), "float32", "bfloat16"
            (no loss scaling needed) or "float16" (GPUs, with loss scaling).
            Weights and optimizer state stay float32, and checkpoints and
            model.keras hold float32 weights either way. A 1000-step run in
            bfloat16 ends at float32's loss within noise
            (docs/training_speed.md).
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
    photo_size: int | None = None
    batch_size: int = 4
    steps: int = 40000
    epochs: int | None = None
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    lr_final_fraction: float = 0.01
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 1.0
    tone_weight: float = 0.0
    tone_scale: int = 16
    pixel_weight: float = 1.0
    ssim_weight: float = 0.0
    painting_style_weight: float = 0.0
    pair_flip: bool = True
    pair_crop_step: int = 1
    content_layers: dict | None = None
    style_layers: dict | None = None
    style_size: int | None = 512
    backbone: str = "vgg19"
    vgg_weights: str | None = "imagenet"
    width: float = 1.0
    init_from: str | None = None
    head: str = "tanh"
    net_precision: str = "auto"
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
        self._check_choice("validate", VALIDATE_MODES)
        self._check_choice("loss_precision", vgg.PRECISIONS)
        self._check_choice("head", HEADS)
        self._check_choice("net_precision", NET_PRECISION_CHOICES)
        if self.mixed_precision and self.net_precision not in ("auto", "float32", "float16"):
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
        if self.photo_size is not None and self.photo_size < self.image_size:
            raise ValueError(
                f"photo_size must be >= image_size ({self.image_size}), got {self.photo_size}"
            )
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        self._check_choice("lr_schedule", LR_SCHEDULES)
        if not 0 <= self.lr_final_fraction <= 1:
            raise ValueError(f"lr_final_fraction must be in [0, 1], got {self.lr_final_fraction}")
        if self.loss == "perceptual" and not self.style_image:
            raise ValueError("The perceptual loss needs a style_image")
        for name in ("painting_style_weight", "ssim_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.loss == "perceptual" and self.painting_style_weight > 0:
            raise ValueError(
                "painting_style_weight is a term of the distill loss; the perceptual loss "
                "measures style against the painting with style_weight"
            )
        if self.loss == "perceptual" and self.ssim_weight > 0:
            raise ValueError(
                "ssim_weight is a term of the distill loss (SSIM to the slow output); the "
                "perceptual loss has no target image"
            )

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
        """The Keras dtype policy the network trains under ("auto" resolved on this machine)."""
        if self.mixed_precision:
            return NET_PRECISIONS["float16"]
        if self.net_precision == "auto":
            return NET_PRECISIONS[vgg.resolve_precision("auto")]
        return NET_PRECISIONS[self.net_precision]

    def loss_config(self):
        """The `losses.LossConfig` these settings describe."""
        kwargs = {
            "content_weight": self.content_weight,
            "style_weight": self.style_weight,
            "tv_weight": self.tv_weight,
            "tone_weight": self.tone_weight,
            "tone_scale": self.tone_scale,
        }
        if self.content_layers:
            kwargs["content_layers"] = dict(self.content_layers)
        if self.style_layers:
            kwargs["style_layers"] = dict(self.style_layers)
        return losses.LossConfig(**kwargs)
