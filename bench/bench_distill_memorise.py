"""Can the distill network fit the slow method's strokes at all? SSIM on the pairs it trains on.

    python bench/bench_distill_memorise.py --dataset_dir runs/r17/work/pairs \
        --config configs/recipe_distill_256.json --pairs 4 --size 128 --steps 400 \
        --variant 'l1+features={}' --variant 'l1+features+ssim={"ssim_weight": 2.0}' \
        --out docs/distillation/memorise.json

Trains the fast network of `--config` (with each `--variant`'s JSON
overrides of the `TrainConfig`) on one fixed batch: the first `--pairs`
pairs of a stylized dataset, their top-left `--size` crop (VGG's pooling
grid kept), no augmentation. Every 100 steps it stylizes the batch and
prints the mean SSIM to the slow outputs, beside the unchanged photo's. A
network that cannot memorise four pairs lacks capacity or the loss does not
reward the strokes; one that memorises them quickly but stays at the photo's
SSIM on a larger set (`bench/bench_distill_fit.py`) is short of steps or
data instead. Writes `--out` (JSON: the SSIM curve per variant and its wall
time).
"""

import argparse
import json
import sys
import time
from pathlib import Path

from bench_report import environment, write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _curve(config, photos, slow, steps):
    """SSIM to `slow` of the network every 100 steps of training on the fixed batch."""
    import tensorflow as tf

    from keras_style.core import metrics
    from keras_style.train import trainer

    model = trainer.build_trainer(config)
    batch = tf.data.Dataset.from_tensors((photos, slow)).repeat()
    points, start = [], time.perf_counter()
    for step in range(100, steps + 1, 100):
        model.fit(batch, epochs=1, steps_per_epoch=100, verbose=0)
        ssim = metrics.ssim(model.net(photos, training=False), slow)
        points.append({"step": step, "ssim": ssim, "wall_s": time.perf_counter() - start})
        print(f"{step:>6} SSIM {ssim:.4f}", flush=True)
    return points


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset_dir", required=True, help="a stylized dataset")
    parser.add_argument("--config", required=True, help="a distill TrainConfig preset")
    parser.add_argument("--vgg_weights", default="imagenet", help="VGG weights (a local file)")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--size", type=int, default=128, help="side of the top-left crop")
    parser.add_argument("--steps", type=int, default=400, help="a multiple of 100")
    parser.add_argument("--variant", action="append", required=True, help="NAME=JSON overrides")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.steps < 100 or args.steps % 100:
        parser.error("--steps must be a positive multiple of 100")
    variants = {}
    for spec in args.variant:
        name, _, overrides = spec.partition("=")
        try:
            variants[name] = json.loads(overrides)
        except json.JSONDecodeError as error:
            parser.error(f"--variant {spec!r}: the overrides are not JSON ({error})")

    from keras_style.core import metrics
    from keras_style.distill import dataset as stylized_dataset
    from keras_style.train.config import TrainConfig

    _, photos, slow = stylized_dataset.load_pairs(args.dataset_dir)
    crop = (slice(0, args.pairs), slice(0, args.size), slice(0, args.size))
    photos, slow = photos[crop].astype("float32"), slow[crop].astype("float32")
    base = TrainConfig.from_json(
        args.config, loss="distill", image_size=args.size, vgg_weights=args.vgg_weights
    )
    report = {
        "environment": environment(),
        "dataset": args.dataset_dir,
        "pairs": len(photos),
        "size": args.size,
        "photo_ssim": metrics.ssim(photos, slow),
        "variants": {},
    }
    print(f"photo SSIM {report['photo_ssim']:.4f}")
    for name, overrides in variants.items():
        print(name, flush=True)
        config = base.replace(**overrides)
        report["variants"][name] = {
            "overrides": overrides,
            "points": _curve(config, photos, slow, args.steps),
        }
    write_json(report, args.out)


if __name__ == "__main__":
    main()
