"""Converts a trained model.keras into verified TFLite models with a size/quality/speed report.

    python -m export.convert_tflite --model runs/starry/model.keras --out tflite/starry \\
        --quantization float32,float16,dynamic_int8,int8,int16x8 --sizes 256,384,512 \\
        --calibration_dir ../shared/data/photos

Writes one dynamic-size model per quantization, fixed-size float32/float16
models for GPU delegates, a model card (JSON) beside each file, and
report.json / report.md.
"""

from absl import app, flags

from export._common import log, run_cleanly

_MODEL = flags.DEFINE_string(
    "model",
    None,
    "Trained .keras model, or a bundled style name (keras-style list-styles).",
    required=True,
)
_OUT = flags.DEFINE_string(
    "out", None, "Output folder (new, empty or a previous export).", required=True
)
_QUANT = flags.DEFINE_list(
    "quantization",
    ["float32", "float16", "dynamic_int8", "int8", "int16x8"],
    "Quantizations: float32, float16, dynamic_int8, int8, int16x8.",
)
_SIZES = flags.DEFINE_list("sizes", ["256", "384", "512"], "Fixed sizes (GPU models, timing).")
_CAL_DIR = flags.DEFINE_string("calibration_dir", None, "Photos for int8/int16x8 calibration.")
_NUM_CAL = flags.DEFINE_integer("num_calibration", 100, "Calibration photos to use.")
_MIN_CAL = flags.DEFINE_integer("min_calibration", 100, "Fewest calibration photos accepted.")
_INT8_IO = flags.DEFINE_enum("int8_io", "float32", ["float32", "uint8"], "int8 model I/O type.")
_TEST_DIR = flags.DEFINE_string("test_dir", None, "Test photos (default: --calibration_dir).")
_NUM_TEST = flags.DEFINE_integer(
    "num_test_photos", 4, "Test photos per size (0: no quality check)."
)
_THREADS = flags.DEFINE_list("threads", ["1", "2"], "LiteRT thread counts to time.")
_RUNS = flags.DEFINE_integer("runs", 5, "Timed runs per latency figure (median).")
_FLOAT_BLOCKS = flags.DEFINE_integer(
    "int8_float_blocks",
    2,
    "Conv blocks before the output head that the int8 model keeps in float (0: head only).",
    lower_bound=0,
)
_STYLE = flags.DEFINE_string("style_name", None, "Style name for the model cards.")
_CONFIG = flags.DEFINE_string(
    "training_config",
    None,
    "Training config JSON (default: config.json beside --model).",
)


def _ints(values, flag):
    try:
        return [int(v) for v in values]
    except ValueError as e:
        raise ValueError(f"--{flag} takes integers; got {','.join(values)}") from e


def main(argv):
    del argv
    from keras_style.export import tflite as export
    from keras_style.export import verify as export_verify

    def run():
        report = export.export_tflite(
            _MODEL.value,
            _OUT.value,
            quantizations=_QUANT.value,
            sizes=_ints(_SIZES.value, "sizes"),
            calibration_dir=_CAL_DIR.value,
            num_calibration=_NUM_CAL.value,
            min_calibration=_MIN_CAL.value,
            int8_io=_INT8_IO.value,
            test_dir=_TEST_DIR.value,
            num_test_photos=_NUM_TEST.value,
            threads=_ints(_THREADS.value, "threads"),
            runs=_RUNS.value,
            style_name=_STYLE.value,
            training_config=_CONFIG.value,
            log=log,
            int8_float_blocks=_FLOAT_BLOCKS.value,
        )
        print(export_verify.markdown_table(report))
        print(f"TFLite models and report written to {_OUT.value}")

    run_cleanly(run)


if __name__ == "__main__":
    app.run(main)
