r"""Trains a feed-forward stylizer (Johnson et al. 2016) for one style.

    python -m training.train --config=configs/starry_night.json \
        --image_dir=/data/photos --workdir=runs/starry

Flags override the --config preset; the resolved configuration is saved as
workdir/config.json. Rerunning the same command resumes from the newest
checkpoint. The trained network is workdir/model.keras. All flags:
`python -m training.train --helpfull`.

--strategy=mirrored trains on all local GPUs; without GPUs, try it on CPU
devices with --cpu_devices=2 (or KERAS_STYLE_CPU_DEVICES=2); with
--strategy=multi_worker, start one process per TF_CONFIG worker.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402

from keras_style.train import distribution, trainer  # noqa: E402
from training import binary, flags_common  # noqa: E402

FLAGS = flags_common.FLAGS


def run():
    distribution.split_cpu_devices(FLAGS.cpu_devices)  # first: before TF/JAX set up devices
    result = trainer.train(flags_common.resolve_config(), command=binary.command_line())
    print(
        f"Trained to step {result['step']} (resumed at {result['initial_step']}) on "
        f"{result['replicas']} replicas; {result['skipped']} unreadable images skipped; "
        f"model: {result['model_path']}"
    )


def main(argv):
    binary.run_cleanly(argv, run, interrupted=binary.RESUMABLE_INTERRUPTED)


if __name__ == "__main__":
    app.run(main)
