"""absl flags shared by the training binaries, mirroring `keras_style.train.config.TrainConfig`.

Every flag defaults to None, meaning "not given": the value then comes from the
--config preset, or from `TrainConfig`'s default. Only flags given on the
command line override the preset, so `--config=configs/tiny.json
--steps=100` keeps everything else from the preset.
"""

import dataclasses
import json

from absl import flags

from keras_style.core import jsonio, vgg
from keras_style.train import config, data, distribution

FLAGS = flags.FLAGS

#: `TrainConfig`'s defaults: the help texts quote them, so they cannot drift apart.
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(config.TrainConfig)}


def _help(text, field):
    """`text` plus the default `TrainConfig` gives `field` when neither flag nor preset does."""
    return f"{text} (default {_DEFAULTS[field]})"


flags.DEFINE_string(
    "config", None, "JSON preset (e.g. configs/starry_night.json); flags override it."
)
flags.DEFINE_string(
    "workdir", None, "Work dir: checkpoints, logs, samples, config.json, model.keras."
)
flags.DEFINE_string("style_image", None, "Style image file.")
flags.DEFINE_string("dataset", None, _help("TFDS dataset of content photos.", "dataset"))
flags.DEFINE_string("data_dir", None, "TFDS data dir.")
flags.DEFINE_string("image_dir", None, "Folder of content photos (recursive); replaces --dataset.")
flags.DEFINE_enum(
    "validate", None, list(data.VALIDATE_MODES), _help("Image check for --image_dir.", "validate")
)
flags.DEFINE_integer("image_size", None, _help("Side of the square training crops.", "image_size"))
flags.DEFINE_integer(
    "photo_size",
    None,
    "Short side photos are resized to before the random crops (default: --image_size).",
)
flags.DEFINE_integer("batch_size", None, _help("Global batch size.", "batch_size"))
flags.DEFINE_integer("steps", None, _help("Training steps; ignored with --epochs.", "steps"))
flags.DEFINE_integer("epochs", None, "Passes over the content photos, instead of --steps.")
flags.DEFINE_float("learning_rate", None, _help("Adam learning rate.", "learning_rate"))
flags.DEFINE_enum(
    "lr_schedule",
    None,
    list(config.LR_SCHEDULES),
    _help("constant, or cosine decay over the job's steps.", "lr_schedule"),
)
flags.DEFINE_float(
    "lr_final_fraction",
    None,
    _help("cosine: the last learning rate as a fraction of the first.", "lr_final_fraction"),
)
flags.DEFINE_float("content_weight", None, _help("Weight of the content loss.", "content_weight"))
flags.DEFINE_float("style_weight", None, _help("Weight of the style loss.", "style_weight"))
flags.DEFINE_float("tv_weight", None, _help("Weight of the total-variation loss.", "tv_weight"))
flags.DEFINE_float(
    "tone_weight", None, _help("Weight of the tone term (local mean luminance).", "tone_weight")
)
flags.DEFINE_integer(
    "tone_scale", None, _help("Block side (pixels) of the tone term's averages.", "tone_scale")
)
flags.DEFINE_float(
    "pixel_weight", None, _help("Weight of the L1 pixel loss (distill loss only).", "pixel_weight")
)
flags.DEFINE_float(
    "ssim_weight",
    None,
    _help("Distill loss only: weight of 1 - SSIM to the slow method's output.", "ssim_weight"),
)
flags.DEFINE_float(
    "painting_style_weight",
    None,
    _help(
        "Distill loss only: weight of the Gram distance to the painting (--style_image, default "
        "the dataset's), the hybrid recipe.",
        "painting_style_weight",
    ),
)
flags.DEFINE_string("content_layers", None, 'JSON {VGG layer: weight}, e.g. {"block4_conv2": 1}.')
flags.DEFINE_string("style_layers", None, "JSON {VGG layer: weight} for the style loss.")
flags.DEFINE_integer(
    "style_size", None, _help("Long side of the resized style image.", "style_size")
)
flags.DEFINE_enum("backbone", None, list(vgg.BACKBONES), _help("Loss network.", "backbone"))
flags.DEFINE_string(
    "vgg_weights", None, _help("'imagenet' (download) or a local VGG weights file.", "vgg_weights")
)
flags.DEFINE_enum(
    "width", None, ["1.0", "0.5", "0.25"], _help("Network width multiplier.", "width")
)
flags.DEFINE_string(
    "init_from",
    None,
    "A .keras file, bundled style name or checkpoint folder (<workdir>/checkpoints/ckpt-N) "
    "whose weights start the network (same width and head), e.g. to refine a bundled style; "
    "a resumed work dir uses its own checkpoint instead.",
)
flags.DEFINE_enum(
    "head",
    None,
    ["tanh", "clip", "residual"],
    _help(
        "Output head: tanh (paper), clip (straight-through) or residual (photo + change; distill).",
        "head",
    ),
)
flags.DEFINE_enum(
    "net_precision",
    None,
    list(config.NET_PRECISION_CHOICES),
    _help(
        "Compute precision of the network being trained: auto (bfloat16 on GPUs and CPUs "
        "with AMX or AMD AVX512_BF16, else float32), float32, bfloat16 or float16 (GPUs); "
        "weights stay float32.",
        "net_precision",
    ),
)
flags.DEFINE_bool("mixed_precision", None, "Same as --net_precision=float16 (GPUs).")
flags.DEFINE_enum(
    "loss_precision",
    None,
    list(vgg.PRECISIONS),
    _help(
        "Compute precision of the VGG loss network (auto: bfloat16 on GPUs and on CPUs "
        "with bfloat16 instructions, else float32).",
        "loss_precision",
    ),
)
flags.DEFINE_enum(
    "strategy",
    None,
    list(config.STRATEGIES),
    "default | mirrored (all local GPUs, or the CPU devices of --cpu_devices) | multi_worker "
    "(TF_CONFIG); tf.distribute under "
    "TensorFlow, keras.distribution.DataParallel under JAX.",
)
flags.DEFINE_integer(
    "cpu_devices",
    None,
    "Split the host CPU into N devices (to test --strategy=mirrored without GPUs); default: "
    f"${distribution.CPU_DEVICES_ENV} or no split. Not part of the saved config.",
)
flags.DEFINE_enum(
    "jit_compile",
    None,
    ["auto", "true", "false"],
    _help("XLA compilation of the step.", "jit_compile"),
)
flags.DEFINE_integer(
    "checkpoint_every", None, _help("Steps between checkpoints.", "checkpoint_every")
)
flags.DEFINE_integer(
    "keep_checkpoints", None, _help("Newest checkpoints kept.", "keep_checkpoints")
)
flags.DEFINE_integer(
    "summary_every", None, _help("Steps between TensorBoard scalars.", "summary_every")
)
flags.DEFINE_integer(
    "sample_every", None, _help("Steps between sample images, 0 = never.", "sample_every")
)
flags.DEFINE_integer("num_samples", None, _help("Sample images shown.", "num_samples"))
flags.DEFINE_integer("seed", None, "Random seed (weights, data order).")


def _parse(name, value):
    if name == "width":
        return float(value)
    if name == "jit_compile":
        return {"auto": "auto", "true": True, "false": False}[value]
    if name in ("content_layers", "style_layers"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"--{name} must be a JSON object: {e}") from e
    return value


def resolve_config(loss="perceptual"):
    """Preset (if --config) overridden by every flag given; returns a `TrainConfig`."""
    values = {"loss": loss, **(jsonio.read_preset(FLAGS.config) if FLAGS.config else {})}
    for field in dataclasses.fields(config.TrainConfig):
        if field.name in FLAGS and FLAGS[field.name].value is not None:
            values[field.name] = _parse(field.name, FLAGS[field.name].value)
    return config.TrainConfig.from_dict(values)
