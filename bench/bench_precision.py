"""float32 against bfloat16 on this CPU: what `precision="auto"` should pick.

`vgg.resolve_precision("auto")` picks bfloat16 only where the hardware makes it
faster. This bench measures, interleaved in one run, float32 and bfloat16 for

- one 3x3 convolution of VGG's block-3 shape (batch 4, 64x64, 256 -> 256),
  forward and forward+backward (the kernel oneDNN picks is printed by
  `ONEDNN_VERBOSE=1`);
- the slow path's loss network: VGG16 features up to block5_conv1 at 384x384,
  forward and backward to the image (random weights: speed does not depend on them);
- `FastStylizer` (width 0.5, the bundled styles' width) at 512x512,

and records the CPU's feature flags, so the rule in `vgg._BF16_CPU_FLAGS` can be
checked on every machine it runs on.

    python bench/bench_precision.py --out docs/precision/bench.json [--reps 5]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_style.core import vgg  # noqa: E402
from keras_style.core.transformer_net import TransformerNet  # noqa: E402
from keras_style.fast.stylizer import FastStylizer  # noqa: E402

PRECISIONS = ("float32", "bfloat16")
CONV_FLOP = 2 * 4 * 64 * 64 * 256 * 256 * 9


def cpu_flags():
    """The bfloat16/int8/AMX-related flags of /proc/cpuinfo and the CPU's name."""
    name, flags = platform.processor(), []
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and not name:
                    name = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    break
    except OSError:
        pass
    keep = [f for f in flags if f.startswith(("amx", "avx512", "avx_vnni", "avx2", "fma"))]
    return {"model": name, "flags": sorted(keep)}


def conv_calls(dtype):
    """Forward and forward+backward of the block-3 convolution in `dtype`."""
    rng = np.random.default_rng(0)
    x = tf.cast(rng.standard_normal((4, 64, 64, 256), np.float32), dtype)
    w = tf.cast(0.02 * rng.standard_normal((3, 3, 256, 256), np.float32), dtype)
    fwd = tf.function(lambda: tf.nn.conv2d(x, w, 1, "SAME"))

    @tf.function
    def fwd_bwd():
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            loss = tf.reduce_sum(tf.cast(tf.nn.conv2d(x, w, 1, "SAME"), tf.float32))
        return tape.gradient(loss, [x, w])

    return {"conv_fwd": lambda: fwd().numpy(), "conv_fwd_bwd": lambda: fwd_bwd()[0].numpy()}


def vgg_call(precision):
    """VGG16 features at 384x384 and the gradient of their sum of squares to the image."""
    layers = [f"block{i}_conv1" for i in range(1, 6)] + ["block4_conv2"]
    extractor = vgg.FeatureExtractor(layers, backbone="vgg16", weights=None, precision=precision)
    image = tf.Variable(np.random.default_rng(1).uniform(0, 255, (1, 384, 384, 3)), dtype="float32")

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            feats = extractor(image)
            sums = [tf.reduce_sum(tf.square(tf.cast(f, tf.float32))) for f in feats.values()]
            loss = tf.add_n(sums)
        return tape.gradient(loss, image)

    return lambda: step().numpy()


def fast_call(net, precision):
    stylizer = FastStylizer(net, precision=precision)
    photo = np.random.default_rng(2).uniform(0, 255, (512, 512, 3)).astype("float32")
    return lambda: stylizer.stylize(photo)


def timed(fn, reps):
    fn()
    fn()  # trace and warm up
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--reps", type=int, default=5, help="timed runs per case and precision")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    net = TransformerNet(width=0.5)
    calls = {}
    for precision in PRECISIONS:
        dtype = getattr(tf, precision)
        for case, fn in conv_calls(dtype).items():
            calls[(case, precision)] = fn
        calls[("vgg16_384_fwd_bwd", precision)] = vgg_call(precision)
        calls[("fast_w0.5_512", precision)] = fast_call(net, precision)
    times = {key: [] for key in calls}
    for _ in range(args.reps):  # interleaved: a burst of load hits both precisions
        for key, fn in calls.items():
            times[key] += timed(fn, 1)
    results = {}
    for (case, precision), ts in times.items():
        ms = 1000 * statistics.median(ts)
        entry = {"median_ms": round(ms, 1), "min_ms": round(1000 * min(ts), 1)}
        if case.startswith("conv"):
            flop = CONV_FLOP * (3 if case == "conv_fwd_bwd" else 1)
            entry["tflops"] = round(flop / (ms / 1000) / 1e12, 3)
        results.setdefault(case, {})[precision] = entry
        print(f"{case:20s} {precision:9s} median {ms:8.1f} ms", flush=True)
    for case, r in results.items():
        ratio = r["bfloat16"]["median_ms"] / r["float32"]["median_ms"]
        r["bfloat16_over_float32"] = round(ratio, 3)
        print(f"{case:20s} bfloat16 / float32 time: {r['bfloat16_over_float32']:.2f}")
    report = {
        "command": "python bench/bench_precision.py --out " + args.out,
        "cpu": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": round(load, 2),
        "tensorflow": tf.__version__,
        "auto_resolves_to": vgg.resolve_precision("auto"),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print("auto resolves to", report["auto_resolves_to"], "; written", args.out)


if __name__ == "__main__":
    main()
