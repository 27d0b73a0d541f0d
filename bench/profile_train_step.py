"""Where a fast-path training step spends its time: TensorFlow profiler ops by type and by layer.

    python bench/profile_train_step.py --width 1.0 --size 256 \
        --out docs/training_speed/profile_w1.0_256.json

Builds the trainer (VGG16 perceptual loss, clip head, batch 4) on a constant
batch, runs two warm-up steps, profiles two steps with `tf.profiler` and
reduces the trace to self-time per op type and per op (the TensorFlow
profiler's framework_op_stats tool). Self-times are summed over threads, so
they exceed the wall time on a multi-core CPU; "IDLE" is time a thread waited.
"""

import argparse
import collections
import glob
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _op_stats(logdir):
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    path = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0]
    data, ok = plugin.xspace_to_tools_data([path], "framework_op_stats", {})
    if not ok:
        raise RuntimeError("the profiler could not convert its trace")
    table = json.loads(data)
    table = table[0] if isinstance(table, list) else table
    columns = [c["id"] for c in table["cols"]]
    return [
        dict(zip(columns, [c.get("v") if c else None for c in r["c"]], strict=False))
        for r in table["rows"]
    ]


def _layer_of(op_name):
    """The network or VGG layer an op belongs to, from its name scope."""
    parts = op_name.split("/")
    for part in parts:
        base = part.rsplit("_", 1)[0] if part[-1:].isdigit() else part
        if base.startswith(("block", "stem", "down", "res", "up", "head", "einsum")):
            return ("backward " if "gradient_tape" in op_name else "") + base
    return "other"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--net_precision", default="float32")
    parser.add_argument(
        "--vgg_weights", default=str(SHARED / "weights" / "vgg16_hed_notop_fp16.weights.h5")
    )
    parser.add_argument("--style", default=str(SHARED / "data" / "styles" / "great_wave.jpg"))
    parser.add_argument("--package_root", default=str(REPO), help="profile this checkout's code")
    parser.add_argument("--out")
    args = parser.parse_args()
    sys.path.insert(0, args.package_root)

    import numpy as np
    import tensorflow as tf

    try:
        from keras_style.train.config import TrainConfig
        from keras_style.train.model import build_trainer
    except ImportError:  # package roots from before the subpackages
        from keras_style.trainer import TrainConfig, build_trainer

    precision = {} if args.net_precision == "float32" else {"net_precision": args.net_precision}
    config = TrainConfig(
        style_image=args.style,
        backbone="vgg16",
        vgg_weights=args.vgg_weights,
        image_size=args.size,
        batch_size=4,
        width=args.width,
        head="clip",
        style_size=256,
        **precision,
    )
    model = build_trainer(config)
    batch = np.random.RandomState(0).uniform(0, 255, (4, args.size, args.size, 3))
    dataset = tf.data.Dataset.from_tensors(batch.astype("float32")).repeat()
    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
        wall = (time.perf_counter() - start) / 2
        tf.profiler.experimental.stop()
        rows = _op_stats(logdir)
    busy = [r for r in rows if r["type"] != "IDLE"]
    total = sum(r["total_self_time"] for r in busy) / 2e6  # seconds per step
    by_type, by_layer = collections.Counter(), collections.Counter()
    for r in busy:
        by_type[r["type"]] += r["total_self_time"] / 2e6
        by_layer[_layer_of(r["operation"])] += r["total_self_time"] / 2e6
    report = {
        "command": " ".join(["python", *sys.argv]),
        "wall_s_per_step": wall,
        "busy_thread_s_per_step": total,
        "by_op_type_s": dict(by_type.most_common()),
        "by_layer_s": dict(by_layer.most_common()),
        "top_ops": [
            {"op": r["operation"], "type": r["type"], "s_per_step": r["total_self_time"] / 2e6}
            for r in sorted(busy, key=lambda r: -r["total_self_time"])[:25]
        ],
    }
    print(f"wall {wall:.2f} s/step, busy thread time {total:.2f} s/step")
    for name, seconds in by_type.most_common(12):
        print(f"  {name:28s} {seconds:7.2f} s  {100 * seconds / total:5.1f}%")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
