"""Where `FastStylizer`'s forward pass spends its time: TensorFlow profiler ops by type.

    python bench/profile_inference.py --width 1.0 --size 512 --precision bfloat16 \
        --out docs/tflite_xnnpack/profile_inference_current.json
    python bench/profile_inference.py --package_root <checkout of an older revision> ...

Builds a `TransformerNet` of `--width` with seeded random weights (the
arithmetic of a trained one), wraps it in `FastStylizer(precision=...)`,
warms up, profiles `--calls` forward passes on one `--size` x `--size`
image and reduces the trace to self-time per op type and per op (the
profiler's framework_op_stats tool, as `profile_train_step.py` does). The
network is a chain of ops, so the busy time is close to the wall time.
"""

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_train_step import _op_stats  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--precision", default="bfloat16")
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--package_root", default=str(REPO), help="profile this checkout's code")
    parser.add_argument("--out")
    args = parser.parse_args()
    sys.path.insert(0, args.package_root)

    import keras
    import numpy as np
    import tensorflow as tf

    from keras_style.core.transformer_net import TransformerNet
    from keras_style.fast.stylizer import FastStylizer

    keras.utils.set_random_seed(0)
    stylizer = FastStylizer(TransformerNet(width=args.width), precision=args.precision)
    size = (1, args.size, args.size, 3)
    photo = np.random.default_rng(2).uniform(0, 255, size).astype("float32")
    for _ in range(3):
        stylizer._run(photo)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        for _ in range(args.calls):
            stylizer._run(photo)
        wall = (time.perf_counter() - start) / args.calls
        tf.profiler.experimental.stop()
        rows = _op_stats(logdir)
    busy = [r for r in rows if r["type"] != "IDLE"]
    per_call = 1e3 * args.calls  # profiler microseconds -> ms per call
    by_type = collections.Counter()
    for r in busy:
        by_type[r["type"]] += r["total_self_time"] / per_call
    total = sum(by_type.values())
    report = {
        "command": " ".join(["python", *sys.argv]),
        "package_root": args.package_root,
        "wall_ms_per_call": round(1e3 * wall, 2),
        "busy_ms_per_call": round(total, 2),
        "by_op_type_ms": {k: round(v, 3) for k, v in by_type.most_common()},
        "top_ops": [
            {
                "op": r["operation"],
                "type": r["type"],
                "ms": round(r["total_self_time"] / per_call, 3),
            }
            for r in sorted(busy, key=lambda r: -r["total_self_time"])[:30]
        ],
    }
    print(f"wall {report['wall_ms_per_call']} ms/call, busy {report['busy_ms_per_call']} ms/call")
    for name, ms in by_type.most_common(12):
        print(f"  {name:28s} {ms:7.2f} ms  {100 * ms / total:5.1f}%")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
