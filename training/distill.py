r"""Trains the fast network on a stylized dataset (distillation of the slow method).

Same flags, network, work dir, checkpoints/resume, TensorBoard, progress bar
and --strategy as training.train (`training.flags_common`,
`keras_style.train.trainer`), plus --dataset_dir (one dataset, or several made with
the same recipe, comma-separated); the loss is the L1 pixel distance
to the slow method's output (--pixel_weight) plus VGG feature (--content_weight)
and Gram (--style_weight) distances to it, and total variation (--tv_weight);
--ssim_weight adds 1 - SSIM to it (fits the slow method's strokes several
times faster, `configs/recipe_distill_ssim_256.json`).
--painting_style_weight adds the perceptual loss's style term, the Gram
distance to the painting (the hybrid recipe, `configs/recipe_hybrid_256.json`).
Set the weights you mean in the config: --style_weight defaults to 10, as in
training.train.

    python -m training.distill --config=configs/distill_train_cpu.json \
        --dataset_dir=datasets/train_128 --workdir=runs/distill_starry_night \
        --vgg_weights=../shared/weights/vgg16_hed_notop_fp16.weights.h5

Rerunning the same command resumes from the newest checkpoint.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from keras_style.distill import training as distill  # noqa: E402
from keras_style.train import distribution  # noqa: E402
from training import binary, flags_common  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_list(
    "dataset_dir",
    None,
    "Stylized dataset(s) from training.make_stylized_dataset; several (comma-separated) "
    "must share one recipe.",
)
flags.DEFINE_bool("pair_flip", None, "Mirror half the training pairs (default true).")
flags.DEFINE_integer(
    "pair_crop_step", None, "Training crop offsets are multiples of this (default 1; 16: VGG grid)."
)
flags.DEFINE_integer("verbose", 1, "fit verbosity: 1 progress bar, 2 one line per epoch, 0 none.")


def run():
    distribution.split_cpu_devices(FLAGS.cpu_devices)  # first: before TF/JAX set up devices
    if not FLAGS.dataset_dir:
        raise ValueError("--dataset_dir is required")
    config = flags_common.resolve_config(loss="distill")
    if config.loss != "distill":
        raise ValueError(
            f"training.distill trains the distill loss; the preset says {config.loss!r}"
        )
    summary = distill.distill(config, FLAGS.dataset_dir, verbose=FLAGS.verbose)
    summary.pop("history", None)
    print(json.dumps(summary, indent=1))


def main(argv):
    binary.run_cleanly(argv, run, interrupted=binary.RESUMABLE_INTERRUPTED)


if __name__ == "__main__":
    app.run(main)
