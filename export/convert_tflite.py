"""Converts a trained model.keras into verified TFLite models with a size/quality/speed report.

    python -m export.convert_tflite --model runs/starry/model.keras --out tflite/starry \\
        --quantization float32,float16,dynamic_int8,int8,int16x8 --sizes 256,384,512 \\
        --calibration_dir ../shared/data/photos

Writes one dynamic-size model per quantization, fixed-size float32/float16
models for GPU delegates, a model card (JSON) beside each file, and
report.json / report.md.
"""

import dataclasses

from absl import app, flags

from export._common import log, run_cleanly
from keras_style.export.convert import INT8_IO_TYPES
from keras_style.export.tflite import TFLiteOptions

_FIELDS = {f.name: f for f in dataclasses.fields(TFLiteOptions)}


def _default(name):
    return _FIELDS[name].default


def _help(name):
    return _FIELDS[name].metadata["help"]


def _strings(name):
    return [str(v) for v in _default(name)]


_MODEL = flags.DEFINE_string(
    "model",
    None,
    "Trained .keras model, or a bundled style name (keras-style list-styles).",
    required=True,
)
_OUT = flags.DEFINE_string(
    "out", None, "Output folder (new, empty or a previous export).", required=True
)
# Defaults and help below come from `TFLiteOptions`, the library's option group.
_QUANT = flags.DEFINE_list("quantization", _strings("quantizations"), _help("quantizations"))
_SIZES = flags.DEFINE_list("sizes", _strings("sizes"), _help("sizes"))
_CAL_DIR = flags.DEFINE_string(
    "calibration_dir", _default("calibration_dir"), _help("calibration_dir")
)
_NUM_CAL = flags.DEFINE_integer(
    "num_calibration", _default("num_calibration"), _help("num_calibration")
)
_MIN_CAL = flags.DEFINE_integer(
    "min_calibration", _default("min_calibration"), _help("min_calibration")
)
_INT8_IO = flags.DEFINE_enum("int8_io", _default("int8_io"), INT8_IO_TYPES, _help("int8_io"))
_TEST_DIR = flags.DEFINE_string("test_dir", _default("test_dir"), _help("test_dir"))
_NUM_TEST = flags.DEFINE_integer(
    "num_test_photos", _default("num_test_photos"), _help("num_test_photos")
)
_THREADS = flags.DEFINE_list("threads", _strings("threads"), _help("threads"))
_RUNS = flags.DEFINE_integer("runs", _default("runs"), _help("runs"))
_FLOAT_BLOCKS = flags.DEFINE_integer(
    "int8_float_blocks",
    _default("int8_float_blocks"),
    _help("int8_float_blocks"),
    lower_bound=0,
)
_FLOAT_HEAD = flags.DEFINE_boolean(
    "int8_float_head", _default("int8_float_head"), _help("int8_float_head")
)
_STYLE = flags.DEFINE_string("style_name", None, "Style name for the model cards.")
_CONFIG = flags.DEFINE_string(
    "training_config",
    None,
    "Training config JSON (default: config.json beside --model).",
)

#: Flag -> `TFLiteOptions` field, for the options the binary exposes.
FLAG_FIELDS = {
    "quantization": "quantizations",
    "sizes": "sizes",
    "calibration_dir": "calibration_dir",
    "num_calibration": "num_calibration",
    "min_calibration": "min_calibration",
    "int8_io": "int8_io",
    "test_dir": "test_dir",
    "num_test_photos": "num_test_photos",
    "threads": "threads",
    "runs": "runs",
    "int8_float_blocks": "int8_float_blocks",
    "int8_float_head": "int8_float_head",
}


def _ints(values, flag):
    try:
        return [int(v) for v in values]
    except ValueError as e:
        raise ValueError(f"--{flag} takes integers; got {','.join(values)}") from e


def options_from_flags():
    """The `TFLiteOptions` the parsed flags ask for (ValueError on bad values)."""
    return TFLiteOptions(
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
        int8_float_blocks=_FLOAT_BLOCKS.value,
        int8_float_head=_FLOAT_HEAD.value,
    )


def main(argv):
    del argv
    from keras_style.export import tflite as export
    from keras_style.export import verify as export_verify

    def run():
        report = export.export_tflite(
            _MODEL.value,
            _OUT.value,
            options_from_flags(),
            style_name=_STYLE.value,
            training_config=_CONFIG.value,
            log=log,
        )
        print(export_verify.markdown_table(report))
        print(f"TFLite models and report written to {_OUT.value}")

    run_cleanly(run)


if __name__ == "__main__":
    app.run(main)
