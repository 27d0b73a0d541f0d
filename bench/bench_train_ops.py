"""Forward+backward time of the training step's rewritten operations, old form against new.

    python bench/bench_train_ops.py --out docs/training_speed/ops.json
    python bench/bench_train_ops.py --parts network --out docs/training_speed/ops_subpixel.json

- The network's 9x9 output convolution (32 -> 3 channels at 256 px, batch 4):
  `keras.layers.Conv2D` against `keras_style.core.layers.Conv2D` in training mode
  (a 1x9 convolution to 27 channels plus 9 row-shifted sums).
- The Gram matrices of VGG16's block1..4_conv1 features at 256 px, batch 4:
  the einsum the losses used before against the batched matmul of
  `keras_style.core.losses.gram_matrix`.
- `--parts network`: the whole `TransformerNet` in training mode (widths 1.0
  and 0.5, 256 px, batch 4, gradients to its weights), its upsampling blocks
  as upsample-pad-conv chains against their low-resolution form
  (`keras_style.core.subpixel`, which the training pass uses).

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


def _print(title, medians):
    (old, new) = medians.values()
    shown = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in medians.items())
    print(f"{title}: {shown} -> {old / new:.2f}x")


def _network(width, rounds):
    """The network's training pass with plain upsampling chains and with the sub-pixel form."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_style.core import subpixel
    from keras_style.core.transformer_net import TransformerNet

    keras.utils.set_random_seed(0)
    net = TransformerNet(width=width, head="clip")
    x = tf.constant(np.random.RandomState(2).uniform(0, 255, (4, 256, 256, 3)).astype("float32"))
    rewrite = subpixel._Rewrite

    def run(plain):
        subpixel._Rewrite = (lambda: lambda op: op) if plain else rewrite
        try:
            return [net(x, training=True)]
        finally:
            subpixel._Rewrite = rewrite

    agree = float(np.abs(run(True)[0].numpy() - run(False)[0].numpy()).max())
    steps = {
        "upsample-pad-conv": _step(lambda: run(True), [], net.trainable_variables),
        "low-resolution": _step(lambda: run(False), [], net.trainable_variables),
    }
    medians, raw = _time(steps, rounds)
    _print(f"network width {width}", medians)
    return {"median_s": medians, "runs_s": raw, "max_abs_diff_0_255": agree}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--parts", default="head,grams", help="any of head, grams, network")
    parser.add_argument("--out")
    args = parser.parse_args()
    parts = args.parts.split(",")
    results = {"command": " ".join(["python", *sys.argv]), "cpu": _cpu()}
    if "network" in parts:
        for width in (1.0, 0.5):
            results[f"network_w{width}_256px_b4"] = _network(width, args.rounds)
    if "head" in parts or "grams" in parts:
        _head_and_grams(results, args.rounds)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


def _cpu():
    import bench_train_step

    return bench_train_step._cpu()


def _head_and_grams(results, rounds):
    """The 9x9 head convolution and the Gram matrices, old form against new."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_style.core import layers, losses

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
    medians, raw = _time(steps, rounds)
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
    medians_g, raw_g = _time(steps, rounds)
    results["gram_block1to4_256px_b4"] = {"median_s": medians_g, "runs_s": raw_g}
    _print("head conv", medians)
    _print("grams", medians_g)


if __name__ == "__main__":
    main()
