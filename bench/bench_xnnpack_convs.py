"""What XNNPACK's float32 and int8 convolutions reach on this CPU: the ceiling of the TFLite models.

Converts ten 3x3 convolutions 64 -> 64 at 96x96 (the residual trunk of the
width-0.5 network at a 384x384 input, 62% of its multiply-adds) to a float32
and a full-int8 TFLite model, and times both in the LiteRT interpreter
(XNNPACK) with 1 and 2 threads, interleaved, median. Prints and writes JSON:
ms and GFLOP/s (2 per multiply-add) per model, and int8's time over float32's.

    python bench/bench_xnnpack_convs.py --out docs/tflite_xnnpack/convs.json

int8 convolutions are fast on CPUs with int8 dot products (ARM dotprod/i8mm,
x86 AVX-VNNI/AVX512-VNNI); elsewhere XNNPACK widens int8 to int16, which is
no faster than float32 FMA.
"""

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_OUT = flags.DEFINE_string("out", None, "JSON file to write.")
_REPS = flags.DEFINE_integer("reps", 9, "Interleaved timed repetitions.")
SIDE, CHANNELS, LAYERS = 96, 64, 10


def _convert(int8):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIDE, SIDE, CHANNELS), batch_size=1)
    x = inputs
    for _ in range(LAYERS):
        x = keras.layers.Conv2D(CHANNELS, 3, padding="same")(x)
    model = keras.Model(inputs, x)
    with tempfile.TemporaryDirectory() as folder:
        model.export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if int8:
            rng = np.random.default_rng(0)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.representative_dataset = lambda: (
                [rng.standard_normal((1, SIDE, SIDE, CHANNELS)).astype(np.float32)]
                for _ in range(4)
            )
        return converter.convert()


def main(argv):
    del argv
    from ai_edge_litert.interpreter import Interpreter

    from keras_style.export import delegate as export_delegate

    models = {"float32": _convert(False), "int8": _convert(True)}
    flops = 2 * LAYERS * SIDE * SIDE * 9 * CHANNELS * CHANNELS
    report = {
        "command": "python bench/bench_xnnpack_convs.py " + " ".join(sys.argv[1:]),
        "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "layers": f"{LAYERS} x Conv2D 3x3 {CHANNELS}->{CHANNELS} at {SIDE}x{SIDE}",
        "gflop": flops / 1e9,
        "load_average_start": os.getloadavg(),
        "partitions": {q: export_delegate.delegation(c)["partitions"] for q, c in models.items()},
        "threads": {},
    }
    for threads in (1, 2):
        interpreters = {}
        for name, content in models.items():
            interpreter = Interpreter(model_content=content, num_threads=threads)
            interpreter.allocate_tensors()
            interpreter.invoke()
            interpreters[name] = interpreter
        times = {name: [] for name in interpreters}
        for _ in range(_REPS.value):
            for name, interpreter in interpreters.items():
                start = time.perf_counter()
                interpreter.invoke()
                times[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(t) for name, t in times.items()}
        report["threads"][str(threads)] = {
            **{f"{n}_ms": m * 1000.0 for n, m in medians.items()},
            **{f"{n}_gflops": flops / m / 1e9 for n, m in medians.items()},
            "int8_over_float32": medians["int8"] / medians["float32"],
        }
        print(threads, "thread(s):", json.dumps(report["threads"][str(threads)]))
    report["load_average_end"] = os.getloadavg()
    if _OUT.value:
        from keras_style.core import jsonio

        jsonio.write_json(Path(_OUT.value), report)
        print(f"written {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
