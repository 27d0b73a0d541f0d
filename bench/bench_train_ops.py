"""Forward+backward time of the training step's two rewritten operations, old form against new.

    python bench/bench_train_ops.py --out docs/training_speed/ops.json

- The network's 9x9 output convolution (32 -> 3 channels at 256 px, batch 4):
  `keras.layers.Conv2D` against `keras_style.core.layers.Conv2D` in training mode
  (a 1x9 convolution to 27 channels plus 9 row-shifted sums).
- The Gram matrices of VGG16's block1..4_conv1 features at 256 px, batch 4:
  the einsum the losses used before against the batched matmul of
  `keras_style.core.losses.gram_matrix`.

Variants alternate within each round (median of `--rounds`), so load from
other processes hits both alike; results are checked to agree.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _gram_einsum(features):
    from keras import ops

    shape = ops.shape(features)
    return ops.einsum("nhwc,nhwd->ncd", features, features) / (shape[1] * shape[2])


def _step(fn, inputs, variables):
    import tensorflow as tf

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.add_n([tf.reduce_sum(tf.square(y)) for y in fn()])
        return tape.gradient(loss, [*inputs, *variables])

    return step


def _time(steps, rounds):
    for step in steps.values():
        step()  # trace and warm up
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            [g.numpy() for g in step()]
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_style.core import layers, losses

    results = {"command": " ".join(["python", *sys.argv])}
    x = tf.constant(np.random.RandomState(0).normal(size=(4, 264, 264, 32)).astype("float32"))
    plain, split = keras.layers.Conv2D(3, 9), layers.Conv2D(3, 9)
    plain.build(x.shape)
    split.build(x.shape)
    split.set_weights(plain.get_weights())
    agree = np.abs(plain(x).numpy() - split(x, training=True).numpy()).max()
    steps = {
        "keras Conv2D": _step(lambda: [plain(x)], [x], plain.trainable_variables),
        "row-split Conv2D": _step(
            lambda: [split(x, training=True)], [x], split.trainable_variables
        ),
    }
    medians, raw = _time(steps, args.rounds)
    results["head_conv_9x9_32to3_256px_b4"] = {
        "median_s": medians,
        "runs_s": raw,
        "max_abs_diff": float(agree),
    }
    shapes = [(4, 256, 256, 64), (4, 128, 128, 128), (4, 64, 64, 256), (4, 32, 32, 512)]
    rng = np.random.RandomState(1)
    feats = [tf.constant(rng.normal(size=s).astype("float32")) for s in shapes]
    steps = {
        "einsum": _step(lambda: [_gram_einsum(f) for f in feats], feats, []),
        "batched matmul": _step(lambda: [losses.gram_matrix(f) for f in feats], feats, []),
    }
    medians_g, raw_g = _time(steps, args.rounds)
    results["gram_block1to4_256px_b4"] = {"median_s": medians_g, "runs_s": raw_g}
    for title, med in (("head conv", medians), ("grams", medians_g)):
        (old, new) = med.values()
        print(
            f"{title}: "
            + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in med.items())
            + f" -> {old / new:.2f}x"
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
