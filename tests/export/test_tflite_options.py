"""`TFLiteOptions`: the option group of `export_tflite`, shared with `export.convert_tflite`.

The binary's flags must default to the dataclass's defaults (and carry its
help), and the keyword arguments of the earlier `export_tflite` signature must
still reach the options. The binary is imported in a subprocess: its absl
flags (`--model`, `--out`, ...) would collide with other binaries' flags in
the test process.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_photo
from PIL import Image

from keras_style.export import tflite as export
from keras_style.export.tflite import TFLiteOptions

ROOT = Path(__file__).resolve().parents[2]

_PARSE = """
import dataclasses, json, sys
from absl import flags
from export import convert_tflite as binary
flags.FLAGS(["convert_tflite", "--model=m.keras", "--out=o", *sys.argv[1:]])
print(json.dumps({
    "options": dataclasses.asdict(binary.options_from_flags()),
    "flag_fields": binary.FLAG_FIELDS,
    "help": {name: flags.FLAGS[name].help for name in binary.FLAG_FIELDS},
}))
"""

#: Fields the binary does not expose (comparisons in benches, not a user's choice).
NOT_FLAGS = {"calibration_size", "quantization_recipe", "xnnpack_graph"}


def _run(args, code=_PARSE, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _lists(options):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


def test_binary_flag_defaults_and_help_are_the_dataclass_fields():
    parsed = _run([])
    fields = {f.name: f for f in dataclasses.fields(TFLiteOptions)}
    assert parsed["options"] == _lists(dataclasses.asdict(TFLiteOptions()))
    # Every field is either a flag or deliberately not one: a new field must choose.
    assert set(parsed["flag_fields"].values()) == set(fields) - NOT_FLAGS
    for flag, field in parsed["flag_fields"].items():
        # absl puts "<choice|choice>: " before an enum flag's help.
        assert parsed["help"][flag].endswith(fields[field].metadata["help"])


def test_binary_flags_reach_the_options():
    parsed = _run(
        ["--quantization=int8,float16", "--sizes=64,32", "--threads=3", "--int8_io=uint8"]
        + ["--int8_float_blocks=0", "--num_test_photos=0", "--runs=2", "--min_calibration=7"]
        + ["--int8_float_head"]
    )
    expected = TFLiteOptions(
        quantizations=("float16", "int8"),
        sizes=(32, 64),
        threads=(3,),
        int8_io="uint8",
        int8_float_blocks=0,
        int8_float_head=True,
        num_test_photos=0,
        runs=2,
        min_calibration=7,
    )
    assert parsed["options"] == _lists(dataclasses.asdict(expected))


def test_options_normalize_and_reject_bad_values():
    options = TFLiteOptions(quantizations=["int8", "float32"], sizes=[64, "32", 64], threads=["2"])
    assert options.quantizations == ("float32", "int8")  # report order
    assert options.sizes == (32, 64) and options.threads == (2,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.runs = 3
    for bad, message in [
        ({"quantizations": ["int4"]}, "Unknown quantization 'int4'"),
        ({"sizes": [8]}, "Sizes must be between"),
        ({"int8_io": "int16"}, "int8_io must be one of"),
        ({"threads": [0]}, "threads must be positive"),
        ({"runs": 0}, "runs must be >= 1"),
        ({"int8_float_blocks": -1}, "int8_float_blocks must be >= 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            TFLiteOptions(**bad)


def test_legacy_keywords_map_onto_the_options():
    base = TFLiteOptions(sizes=(48,), runs=2)
    merged = TFLiteOptions.from_kwargs(base, runs=3, xnnpack_graph=False)
    assert merged == TFLiteOptions(sizes=(48,), runs=3, xnnpack_graph=False)
    assert TFLiteOptions.from_kwargs(None) == TFLiteOptions()
    with pytest.raises(TypeError, match=r"\['quantisation', 'size'\]"):
        TFLiteOptions.from_kwargs(None, quantisation=["float16"], size=[32])
    with pytest.raises(TypeError, match="options must be a TFLiteOptions"):
        TFLiteOptions.from_kwargs(["float16"])


def test_export_tflite_takes_legacy_keywords_and_names_unknown_ones(tmp_path):
    import keras

    from keras_style.core import transformer_net

    keras.utils.set_random_seed(0)
    path = tmp_path / "model.keras"
    transformer_net.build_transformer_net(width=0.25).save(path)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):
        Image.fromarray(make_photo(40, 40, seed=i).astype("uint8")).save(photos / f"p{i}.png")
    # min_calibration and calibration_dir reach the photo checks, before any conversion.
    with pytest.raises(ValueError, match="holds 12 photos; .* at least 50"):
        export.export_tflite(
            path,
            tmp_path / "o1",
            quantizations=["int8"],
            calibration_dir=photos,
            min_calibration=50,
        )
    options = TFLiteOptions(quantizations=("int8",), calibration_dir=str(photos))
    with pytest.raises(ValueError, match="at least 13"):
        export.export_tflite(path, tmp_path / "o2", options, min_calibration=13)
    with pytest.raises(TypeError, match="'calibraton_dir'"):
        export.export_tflite(path, tmp_path / "o3", calibraton_dir=photos)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3").exists()


_EXPORT = """
import json, sys
from keras_style.export.tflite import export_tflite
report = export_tflite(
    sys.argv[1], sys.argv[2], quantizations=["float16"], sizes=[16], num_test_photos=0,
    threads=[1], runs=1, int8_io="uint8", style_name="legacy",
)
print(json.dumps({k: report[k] for k in ("quantizations", "sizes", "threads", "int8_io")}
                 | {"names": [v["name"] for v in report["variants"]],
                    "style": report.get("style_name")}))
"""


@pytest.mark.slow
def test_export_tflite_legacy_keywords_end_to_end(tmp_path):
    import keras

    from keras_style.core import transformer_net

    keras.utils.set_random_seed(0)
    path = tmp_path / "model.keras"
    transformer_net.build_transformer_net(width=0.25).save(path)
    report = _run([str(path), str(tmp_path / "out")], code=_EXPORT)
    assert report["quantizations"] == ["float16"] and report["sizes"] == [16]
    assert report["threads"] == [1] and report["int8_io"] == "uint8"
    assert report["names"] == ["float16", "float16_16"]
    assert report["style"] == "legacy"
    assert (tmp_path / "out" / "float16_16.tflite").is_file()
