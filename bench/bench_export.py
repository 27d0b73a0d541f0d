"""Benchmarks the TFLite export of a model.keras and prints every figure the export targets ask for.

    python bench/bench_export.py --model runs/starry/model.keras \
        --photos ../shared/data/photos --sizes 256,384,512 [--out /tmp/bench_export] \
        [--json_out PATH.json]

Exports every quantization (dynamic-size) plus the fixed-size GPU models,
verifies them in LiteRT and prints: file sizes, PSNR/SSIM against the float32
Keras output, median latency with 1 and 2 threads at each size, the
TensorFlow float32 latency at the same sizes, and a pass/fail line per target.
"""

import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_MODEL = flags.DEFINE_string("model", None, "Trained .keras model.", required=True)
_PHOTOS = flags.DEFINE_string("photos", "../shared/data/photos", "Calibration and test photos.")
_SIZES = flags.DEFINE_list("sizes", ["256", "384", "512"], "Sizes to verify and time.")
_OUT = flags.DEFINE_string("out", None, "Keep the export here (default: a temporary folder).")
_NUM_TEST = flags.DEFINE_integer("num_test_photos", 8, "Test photos per size.")
_RUNS = flags.DEFINE_integer("runs", 5, "Timed runs per latency figure (median).")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write the report and machine to this JSON.")
_QUANT = flags.DEFINE_list(
    "quantization", ["float32", "float16", "dynamic_int8", "int8", "int16x8"], "Quantizations."
)


def _print_figures(report):
    from keras_style.export import verify as export_verify

    print(export_verify.markdown_table(report))
    for variant in report["variants"]:
        quality = ", ".join(
            f"{s}px {q['psnr']:.2f} dB / {q['ssim']:.4f}" for s, q in variant["quality"].items()
        )
        print(f"{variant['name']:>14}: {variant['bytes'] / 1e6:7.3f} MB  PSNR/SSIM {quality}")
    print("TensorFlow float32 ms:", report["tensorflow_float32_ms"])
    print("\nTargets:")
    for description, value, passed in export_verify.check_targets(report):
        print(f"  [{'PASS' if passed else 'FAIL'}] {description}: {value:.4g}")


def main(argv):
    del argv
    from bench_report import environment, write_json

    from keras_style.export import tflite as export

    machine = environment()
    sizes = [int(s) for s in _SIZES.value]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = _OUT.value or str(Path(tmp) / "export")
        report = export.export_tflite(
            _MODEL.value,
            out,
            quantizations=_QUANT.value,
            sizes=sizes,
            calibration_dir=_PHOTOS.value,
            num_test_photos=_NUM_TEST.value,
            runs=_RUNS.value,
            log=lambda message: print(f"[{time.perf_counter() - start:6.1f}s] {message}"),
        )
        _print_figures(report)
    if _JSON_OUT.value:
        write_json({"environment": machine, "report": report}, _JSON_OUT.value)
    print(f"\nTotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
