"""Export: SavedModel signatures, every TFLite variant in LiteRT, op checks, reports, bad input.

The TFLite variants are converted once, by the `export.convert_tflite` binary
in a subprocess (TFLiteConverter leaks memory per conversion), from a tiny
network trained for a few seconds; the tests then load and run the files with ai_edge_litert.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_photo
from PIL import Image

from keras_style.core import images, metrics
from keras_style.export import convert as export_convert
from keras_style.export import delegate as export_delegate
from keras_style.export import ops as export_ops
from keras_style.export import saved_model
from keras_style.export import tflite as export
from keras_style.export import verify as export_verify

ROOT = Path(__file__).resolve().parents[2]
SIZES = (32,)
DYNAMIC = ("float32", "float16", "dynamic_int8", "int8", "int16x8")
FIXED = tuple(f"{q}_{s}" for q in ("float32", "float16") for s in SIZES)
#: (PSNR dB, SSIM) floors against Keras of each variant on the briefly trained `tiny` net.
FLOORS = {
    "float32": (80.0, 0.9999),
    "float16": (45.0, 0.999),
    "dynamic": (40.0, 0.99),
    "int8": (20.0, 0.70),
    "int16x8": (30.0, 0.95),
}


def _run(args, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import keras

    from keras_style.core import transformer_net

    keras.utils.set_random_seed(0)  # the quality floors below hold for this network
    model = transformer_net.build_transformer_net(width=0.25, name="tiny_style")
    # Briefly trained (a colour transform of smooth photos), so its activations have the
    # scales of a trained network's: an untrained one saturates and int8 loses 20 dB to
    # that (17.8 dB against 30-32 dB after this training, seed 0).
    photos = np.stack([make_photo(32, 32, seed=100 + i) for i in range(8)])
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="mse")
    model.fit(
        photos, np.clip(photos[..., ::-1] * 0.8 + 30, 0, 255), batch_size=4, epochs=80, verbose=0
    )
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    (path.parent / "config.json").write_text(json.dumps({"style_name": "tiny", "steps": 0}))
    return model, path


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for i in range(12):
        Image.fromarray(make_photo(40, 52, seed=i).astype(np.uint8)).save(folder / f"p{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def tflite_dir(tiny, photo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite") / "export"
    result = _run(
        [
            "-m", "export.convert_tflite", f"--model={tiny[1]}", f"--out={out}",
            f"--calibration_dir={photo_dir}", "--num_calibration=8", "--min_calibration=8",
            "--num_test_photos=2", "--sizes=" + ",".join(map(str, SIZES)), "--runs=1",
        ]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _keras(model, image):
    return np.asarray(model.predict_on_batch(image), np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("name", DYNAMIC)
def test_dynamic_variants_resize_and_match_keras(tflite_dir, tiny, name):
    from ai_edge_litert.interpreter import Interpreter

    image = make_photo(36, 44, seed=5)[None]  # not a multiple of 4, not square
    path = str(tflite_dir / f"{name}.tflite")
    interpreter = Interpreter(model_path=path, num_threads=2)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, image.shape, strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, image)
    interpreter.invoke()
    output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert output.shape == image.shape and output.dtype == np.float32
    assert 0.0 <= output.min() and output.max() <= 255.0
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    assert np.allclose(runner(image=image)["stylized"], output, atol=1e-3)
    # docs/tflite_xnnpack.md: float16 >= 45 dB (held here); int8 >= 30 dB and SSIM >= 0.92 on
    # average over calibrated photos (test_bundled_style_meets_the_documented_floors); this
    # net on photos unlike its calibration set: 22.9 dB / 0.84, report 23.8 dB / 0.79.
    floor, ssim_floor = FLOORS[name.split("_")[0]]
    value = metrics.psnr(output, _keras(tiny[0], image))
    similarity = metrics.ssim(output, _keras(tiny[0], image))
    assert value > floor and similarity > ssim_floor, f"{name}: {value:.2f} dB {similarity:.4f}"


@pytest.mark.slow
@pytest.mark.parametrize("name", FIXED)
def test_fixed_size_models_run_and_pass_gpu_check(tflite_dir, tiny, name):
    size = int(name.rsplit("_", 1)[1])
    path = tflite_dir / f"{name}.tflite"
    assert export_ops.gpu_delegate_issues(path) == []
    assert "SHAPE" not in export_ops.operator_names(path)
    image = make_photo(size, size, seed=3)[None]
    output = export_verify.TFLiteRunner(path)(image)
    assert output.shape == image.shape
    assert metrics.psnr(output, _keras(tiny[0], image)) > 45.0


@pytest.mark.slow
def test_report_and_model_cards(tflite_dir):
    report = json.loads((tflite_dir / "report.json").read_text())
    names = [v["name"] for v in report["variants"]]
    assert names == list(DYNAMIC + FIXED)
    markdown = (tflite_dir / "report.md").read_text()
    for variant in report["variants"]:
        path = tflite_dir / variant["file"]
        assert variant["bytes"] == path.stat().st_size
        assert f"| {variant['name']} |" in markdown
        assert set(variant["latency_ms"]) == {"1", "2"}
        sizes = SIZES if variant["fixed_size"] is None else (variant["fixed_size"],)
        assert set(variant["latency_ms"]["2"]) == {str(s) for s in sizes}
        floor, ssim_floor = FLOORS[variant["name"].split("_")[0]]  # see test_dynamic_...
        figures = (variant["name"], variant["psnr"], variant["ssim"])
        # SSIM of identical-up-to-rounding outputs can exceed 1 by float rounding.
        assert variant["psnr"] > floor and ssim_floor < variant["ssim"] <= 1.0 + 1e-6, figures
        card = json.loads((tflite_dir / variant["card"]).read_text())
        assert card["style_name"] == "tiny" and card["training_config"]["steps"] == 0
        assert card["input"]["name"] == "image" and card["output"]["name"] == "stylized"
        assert card["input"]["range"] == [0, 255] and card["input"]["dtype"] == "float32"
        expected_hw = [-1, -1] if variant["fixed_size"] is None else [variant["fixed_size"]] * 2
        assert card["input"]["shape"] == [1, *expected_hw, 3]
        assert not any(op.startswith("CUSTOM") for op in card["operators"])
    by_name = {v["name"]: v for v in report["variants"]}
    assert by_name["dynamic_int8"]["size_vs_float32"] < 0.5
    assert by_name["int8"]["recipe"]["float_layers"][-2:] == ["head_conv", "head_tanh"]
    assert by_name["int8"]["recipe"]["rewrite"]["float_psnr"] > 60.0
    assert by_name["int16x8"]["recipe"] == {}
    assert by_name["float16"]["recipe"] == {} and "## Quantization recipe" in markdown
    assert set(report["tensorflow_float32_ms"]) == {str(s) for s in SIZES}
    assert "TensorFlow float32" in markdown
    for name in ("float32", "float16", "int8", *FIXED):  # XNNPACK runs the whole model
        assert by_name[name]["xnnpack"]["partitions"] == 1, by_name[name]["xnnpack"]
        assert by_name[name]["xnnpack"]["outside"] == {}, by_name[name]["xnnpack"]
        card = json.loads((tflite_dir / by_name[name]["card"]).read_text())
        assert card["xnnpack"] == by_name[name]["xnnpack"]
    assert "multiples of 4" in json.loads((tflite_dir / "float32.json").read_text())["usage"]


@pytest.mark.slow
def test_int8_with_uint8_io(tiny, photo_dir):
    calibration = export_convert.load_photos(images.list_image_files(photo_dir), 32)
    content = export_convert.convert_model(
        tiny[0], "int8", calibration=calibration, int8_io="uint8"
    )
    runner = export_verify.TFLiteRunner(content)
    assert runner.input_details["dtype"] == runner.output_details["dtype"] == np.uint8
    assert runner.input_details["quantization"][0] > 0
    image = make_photo(32, 40, seed=9)[None]
    output = runner(image)
    assert output.shape == image.shape
    assert metrics.psnr(output, _keras(tiny[0], image)) > 20.0  # measured 26.4 dB
    assert metrics.ssim(output, _keras(tiny[0], image)) > 0.80


@pytest.mark.slow
def test_saved_model_uint8_signature_in_fresh_process(tiny, tmp_path):
    model, path = tiny
    out = saved_model.export_saved_model(path, tmp_path / "serving" / "1")
    images = np.stack([make_photo(20, 28, seed=s) for s in (1, 2)]).astype(np.uint8)
    np.save(tmp_path / "images.npy", images)
    script = f"""
import json, sys
import numpy as np, tensorflow as tf
loaded = tf.saved_model.load({str(out)!r})
images = np.load({str(tmp_path / "images.npy")!r})
out8 = loaded.signatures["serving_default"](images=tf.constant(images))["stylized"].numpy()
outf = loaded.signatures["serving_float32"](images=tf.constant(images, tf.float32))["stylized"]
np.save({str(tmp_path / "out8.npy")!r}, out8)
np.save({str(tmp_path / "outf.npy")!r}, outf.numpy())
print(json.dumps({{"dtype": str(out8.dtype), "shape": list(out8.shape),
                  "keras_style": any(m.startswith("keras_style") for m in sys.modules)}}))
"""
    result = _run(["-c", script])
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info == {"dtype": "uint8", "shape": [2, 20, 28, 3], "keras_style": False}
    out8, outf = np.load(tmp_path / "out8.npy"), np.load(tmp_path / "outf.npy")
    expected = _keras(model, images.astype(np.float32))
    assert np.abs(outf - expected).max() < 1e-2
    assert np.abs(out8.astype(np.float32) - expected).max() <= 0.51
    card = json.loads((out / saved_model.SAVED_MODEL_CARD).read_text())
    assert card["style_name"] == "tiny"
    assert card["signatures"]["serving_default"]["inputs"]["images"]["dtype"] == "uint8"


def test_flex_op_fails_the_builtin_check():
    import tensorflow as tf

    fn = tf.function(
        lambda x: tf.cast(tf.saturate_cast(x, tf.uint8), tf.float32),
        input_signature=[tf.TensorSpec([1, 4, 4, 3], tf.float32)],
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    flex_model = converter.convert()
    assert any(op.startswith("CUSTOM:Flex") for op in export_ops.non_builtin_ops(flex_model))
    with pytest.raises(export_ops.ExportError, match="non-builtin operators.*Flex"):
        export_ops.check_builtin_ops(flex_model)
    with pytest.raises(export_ops.ExportError, match="not supported by the GPU delegate"):
        export_ops.check_gpu_delegate_ops(flex_model)


@pytest.mark.slow
def test_gpu_check_rejects_the_dynamic_model(tflite_dir):
    issues = export_ops.gpu_delegate_issues(tflite_dir / "float16.tflite")
    assert any("dynamic shapes" in issue for issue in issues)
    assert not any("SHAPE" in issue for issue in issues)  # the XNNPACK graph has no shape ops


def test_operator_names_rejects_non_tflite(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="TFL3"):
        export_ops.operator_names(bad)


def test_bad_arguments_raise_clear_errors(tiny, photo_dir, tmp_path):
    path = tiny[1]
    with pytest.raises(ValueError, match="Model file not found"):
        export.export_tflite(tmp_path / "missing.keras", tmp_path / "o1", calibration_dir=photo_dir)
    with pytest.raises(ValueError, match="Unknown quantization 'int4'"):
        export.export_tflite(path, tmp_path / "o2", quantizations=["int4"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="No images"):
        export.export_tflite(path, tmp_path / "o3", quantizations=["int8"], calibration_dir=empty)
    with pytest.raises(ValueError, match="at least 100"):
        export.export_tflite(
            path, tmp_path / "o4", quantizations=["int8"], calibration_dir=photo_dir
        )
    with pytest.raises(ValueError, match="need calibration_dir"):
        export.export_tflite(path, tmp_path / "o5", quantizations=["int16x8"])
    with pytest.raises(ValueError, match="Sizes must be"):
        export.export_tflite(path, tmp_path / "o6", sizes=[8], calibration_dir=photo_dir)
    with pytest.raises(ValueError, match="Refusing to overwrite"):
        saved_model.export_saved_model(path, photo_dir)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--quantization=int4"], "Unknown quantization 'int4'"),
        (["--quantization=int8", "--calibration_dir=EMPTY"], "No images"),
        (["--model=MISSING"], "Model file not found"),
    ],
)
def test_binary_bad_arguments_exit_2(tiny, tmp_path, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [
        a.replace("EMPTY", str(empty)).replace("MISSING", str(tmp_path / "nope.keras"))
        for a in args
    ]
    model_flag = [] if any(a.startswith("--model") for a in args) else [f"--model={tiny[1]}"]
    result = _run(["-m", "export.convert_tflite", *model_flag, f"--out={tmp_path / 'o'}", *args])
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_saved_model_binary_missing_model_exits_2(tmp_path):
    result = _run(
        [
            "-m",
            "export.export_saved_model",
            f"--model={tmp_path / 'x.keras'}",
            f"--out={tmp_path}/o",
        ]
    )
    assert result.returncode == 2 and "Model file not found" in result.stderr


def test_metrics_psnr_and_ssim():
    a = np.zeros((2, 16, 16, 3), np.float32)
    b = a + 1.0
    assert metrics.psnr(a, a) == float("inf")
    assert metrics.psnr(a, b) == pytest.approx(20 * np.log10(255.0), abs=1e-3)
    image = make_photo(24, 24)
    assert metrics.ssim(image, image) == pytest.approx(1.0, abs=1e-6)
    assert (
        metrics.ssim(
            image,
            np.clip(image + np.random.default_rng(0).normal(0, 40, image.shape), 0, 255),
        )
        < 0.9
    )
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(a, b[:1])
    with pytest.raises(ValueError, match="11 x 11"):
        metrics.ssim(a[:, :8, :8], b[:, :8, :8])


def _trained_like(width=0.25, seed=0):
    """A random network with a trained stylizer's quantization traps.

    Convolution channels that feed instance norm get spreads from 0.05x to
    20x and large offsets, and the head drives tanh deep into saturation (a
    trained net's pre-tanh values reach +-100).
    """
    from keras_style.core import transformer_net
    from keras_style.export import rewrite as export_rewrite

    model = transformer_net.build_transformer_net(width=width, name="trained_like")
    rng = np.random.default_rng(seed)
    for conv_name, _ in export_rewrite.conv_norm_pairs(model):
        conv = model.get_layer(conv_name)
        kernel, bias = conv.get_weights()
        gain = np.exp(rng.uniform(np.log(0.05), np.log(20.0), kernel.shape[-1]))
        offset = rng.normal(0.0, 5.0, bias.shape)
        conv.set_weights([kernel * gain, (bias + offset) * gain])
    head = model.get_layer("head_conv")
    head.set_weights([w * 40.0 for w in head.get_weights()])
    return model


def test_rewrite_is_float_equivalent_and_balances_channels():
    from keras_style.export import rewrite as export_rewrite

    model = _trained_like()
    before = [w.copy() for w in model.get_weights()]
    photos = np.stack([make_photo(32, 32, seed=s) for s in range(6)])
    clone, info = export_rewrite.rewrite_for_quantization(model, photos[:4], tanh_limit=5.0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert len(info["equalized_convolutions"]) == 15  # every conv but the head
    assert info["clipped_tanh"] == {"head_tanh": {"conv": "head_conv", "limit": 5.0}}
    assert info["float_psnr"] > 70.0
    unseen = photos[4:]
    assert metrics.psnr(clone.predict_on_batch(unseen), model.predict_on_batch(unseen)) > 70.0
    names = ["res1_a_conv", "up1_conv"]
    old = export_rewrite.channel_statistics(model, names, photos[:4])
    for name, (mean, spread) in export_rewrite.channel_statistics(clone, names, photos[:4]).items():
        expected = np.minimum(1.0, old[name][1] / export_rewrite.MIN_SPREAD)  # gain is capped
        assert np.allclose(spread, expected, rtol=1e-3) and np.abs(mean).max() < 1e-3
    head = clone.get_layer("head_conv").get_weights()[0]
    assert np.allclose(head * 5.0, model.get_layer("head_conv").get_weights()[0], rtol=1e-5)
    assert export_rewrite.float_head_layers(model, blocks=0) == ["head_conv", "head_tanh"]


def test_clip_head_float_layers_and_no_tanh_clipping():
    from keras_style.core.transformer_net import TransformerNet
    from keras_style.export import rewrite as export_rewrite

    model = TransformerNet(width=0.25, head="clip")
    head = ["head_conv", "scale_out", "head_clip"]
    assert export_rewrite.float_head_layers(model, blocks=0) == head
    assert export_rewrite.float_head_layers(model, blocks=0, clip_head=False) == []
    blocks = export_rewrite.float_head_layers(model, blocks=2, clip_head=False)
    assert blocks == export_rewrite.float_head_layers(model, blocks=2)[: len(blocks)]
    assert "up1_conv" in blocks and not set(head) & set(blocks)
    # By default the last upsampling block (conv, norm, ReLU, the head's padding) stays float too.
    assert export_rewrite.float_head_layers(model) == [
        "head_pad",
        "up2_relu",
        "up2_norm",
        "up2_conv",
        *head,
    ]
    up1 = ["up2_pad", "up2_upsample", "up1_relu", "up1_norm", "up1_conv"]
    assert export_rewrite.float_head_layers(model, blocks=2)[:9] == [
        "head_pad",
        "up2_relu",
        "up2_norm",
        "up2_conv",
        *up1,
    ]
    with pytest.raises(ValueError, match="blocks must be 0 or more"):
        export_rewrite.float_head_layers(model, blocks=-1)
    assert export_rewrite.tanh_heads(model) == []


def _weight_dtypes(content, layer):
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_content=content).get_tensor_details()
    return {
        np.dtype(d["dtype"]).name
        for d in details
        if f"/{layer}_1/" in d["name"] and len(d["shape"]) == 4 and d["shape"][1] > 1
    }


def _check_one_partition_and_output_range(content):
    """One XNNPACK partition, nothing outside, and [0, 255] output of the input's shape."""
    info = export_delegate.delegation(content, (1, 32, 40, 3))
    assert info["partitions"] == 1 and info["outside"] == {}, info
    image = make_photo(32, 40, seed=9)[None]
    output = export_verify.TFLiteRunner(content)(image)
    assert output.shape == image.shape and 0.0 <= output.min() and output.max() <= 255.0


@pytest.mark.slow
def test_int8_recipe_keeps_the_head_float_and_the_rest_int8(photo_dir):
    """The recipe's structure; its quality on a trained network is bench_export's job.

    (Random networks, whose int8 error is chaotic, say nothing about trained ones.)
    """
    model = _trained_like()
    calibration = export_convert.load_photos(images.list_image_files(photo_dir), 32)
    naive, none = export_convert.convert_model_with_recipe(
        model, "int8", calibration=calibration, rewrite=False
    )
    content, recipe = export_convert.convert_model_with_recipe(
        model, "int8", calibration=calibration
    )
    assert none == {} and recipe["float_layers"] == [
        "head_pad",
        "up2_relu",
        "up2_norm",
        "up2_conv",
        "up2_pad",
        "up2_upsample",
        "up1_relu",
        "up1_norm",
        "up1_conv",
        "head_conv",
        "head_tanh",
    ]  # default: both upsampling blocks (export_convert.INT8_FLOAT_BLOCKS)
    assert recipe["float_tensors"] > 0 and recipe["rewrite"]["float_psnr"] > 70.0
    export_ops.check_builtin_ops(content)
    assert {"DEQUANTIZE", "QUANTIZE"} <= set(export_ops.operator_names(content))
    assert _weight_dtypes(naive, "head_conv") == {"int8"}
    assert _weight_dtypes(content, "head_conv") == {"float32"}
    assert _weight_dtypes(content, "up2_conv") == {"float32"}
    assert _weight_dtypes(content, "up1_conv") == {"float32"}
    assert _weight_dtypes(content, "res1_a_conv") == {"int8"}
    _check_one_partition_and_output_range(content)


@pytest.mark.slow
def test_int8_recipe_quantizes_a_clip_head_unless_asked(photo_dir):
    """Clip heads go int8 by default (one grey level per step); the upsampling blocks stay float."""
    import keras

    from keras_style.core.transformer_net import TransformerNet

    keras.utils.set_random_seed(3)
    model = TransformerNet(width=0.25, head="clip")
    calibration = export_convert.load_photos(images.list_image_files(photo_dir), 32)
    content, recipe = export_convert.convert_model_with_recipe(
        model, "int8", calibration=calibration
    )
    assert "head_conv" not in recipe["float_layers"] and "up1_conv" in recipe["float_layers"]
    assert _weight_dtypes(content, "head_conv") == {"int8"}
    assert _weight_dtypes(content, "up2_conv") == {"float32"}
    assert _weight_dtypes(content, "res1_a_conv") == {"int8"}
    _check_one_partition_and_output_range(content)
    floated, recipe = export_convert.convert_model_with_recipe(
        model, "int8", calibration=calibration, float_clip_head=True
    )
    assert "head_conv" in recipe["float_layers"]
    assert _weight_dtypes(floated, "head_conv") == {"float32"}


@pytest.mark.slow
def test_residual_head_converts_and_keeps_its_input_path_in_float(photo_dir):
    import keras

    from keras_style.core.transformer_net import TransformerNet
    from keras_style.export import rewrite as export_rewrite

    keras.utils.set_random_seed(5)
    model = TransformerNet(width=0.25, head="residual")
    head = model.get_layer("head_conv")
    head.set_weights([np.full_like(w, 0.002) for w in head.get_weights()])  # a visible change
    residual = ["head_conv", "scale_out", "residual_add", "head_clip"]
    assert export_rewrite.float_head_layers(model, blocks=0) == residual
    # The photo it adds back must not be rounded: a residual head stays float regardless.
    assert export_rewrite.float_head_layers(model, blocks=0, clip_head=False) == residual
    calibration = export_convert.load_photos(images.list_image_files(photo_dir), 32)
    content, recipe = export_convert.convert_model_with_recipe(
        model, "int8", calibration=calibration
    )
    assert "residual_add" in recipe["float_layers"]
    export_ops.check_builtin_ops(content)
    info = export_delegate.delegation(content, (1, 32, 40, 3))
    assert info["partitions"] == 1 and info["outside"] == {}, info
    image = make_photo(32, 40, seed=9)[None]
    expected = model.predict_on_batch(image)
    assert np.abs(expected - image).mean() > 5.0  # the network changes the photo
    assert metrics.psnr(export_verify.TFLiteRunner(content)(image), expected) > 30.0


@pytest.mark.slow
def test_saved_model_from_a_bundled_style_name(tiny, tmp_path, monkeypatch):
    from keras_style.fast import styles

    card = {"painting": {"title": "T", "artist": "A", "license": "CC0"}}
    card["training"] = {"config": {"style_image": "tiny.jpg", "steps": 5}}
    styles.save_bundled_style(tiny[0], "tiny_wave", card, assets_dir=tmp_path / "styles")
    monkeypatch.setattr(styles, "ASSETS_DIR", tmp_path / "styles")
    out = saved_model.export_saved_model("tiny_wave", tmp_path / "serving" / "1")
    model_card = json.loads((out / saved_model.SAVED_MODEL_CARD).read_text())
    assert model_card["style_name"] == "tiny_wave"
    assert model_card["training_config"] == card["training"]["config"]
    with pytest.raises(ValueError, match="Model file not found: monet"):
        saved_model.export_saved_model("monet", tmp_path / "other")


# ---------------------------------------------------------------------------
# The XNNPACK form of the graph (export_graph) and the delegate report (export_delegate)


@pytest.mark.parametrize("head", ["tanh", "clip", "residual"])
def test_xnnpack_copy_computes_the_network(head):
    """Same function as the Keras network: static sizes (any) and dynamic ones (multiples of 4)."""
    import keras
    import tensorflow as tf

    from keras_style.core.transformer_net import TransformerNet
    from keras_style.export import graph as export_graph

    keras.utils.set_random_seed(3)
    model = TransformerNet(width=0.25, head=head)
    head_conv = model.get_layer("head_conv")
    head_conv.set_weights([w + 0.01 for w in head_conv.get_weights()])  # residual: not zeros
    copy = export_graph.xnnpack_copy(model)
    kinds = {type(layer).__name__ for layer in copy.layers}
    assert {"SliceReflectionPadding2D", "XnnSubpixelUpConv2D", "XnnBlockConv2D"} <= kinds
    assert "ReflectionPadding2D" not in kinds and "NearestUpsampling2D" not in kinds
    for height, width in ((30, 34), (24, 36)):  # static: padded to 32 x 36 inside, cropped
        image = make_photo(height, width, seed=height)[None]
        expected = _keras(model, image)
        assert np.abs(_keras(copy, image) - expected).max() < 0.05
    dynamic = tf.function(copy, input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    image = make_photo(28, 40, seed=1)[None]
    assert np.abs(dynamic(image).numpy() - _keras(model, image)).max() < 0.05


def test_reflect_pad_and_edge_pad_match_numpy():
    from keras_style.core import padding
    from keras_style.export import graph as export_graph

    x = np.arange(2 * 6 * 7 * 2, dtype=np.float32).reshape(2, 6, 7, 2)
    padded = export_graph.SliceReflectionPadding2D((4, 2, 1, 3))(x)
    expected = np.pad(x, [(0, 0), (4, 2), (1, 3), (0, 0)], mode="reflect")
    assert np.array_equal(np.asarray(padded), expected)
    edge = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="edge")
    assert np.array_equal(np.asarray(export_graph.edge_pad(x)), edge)
    pieces = [x[:, i : i + 1] for i in range(6)]
    assert np.array_equal(np.asarray(padding.concatenate(pieces, 1, export_graph.MAX_CONCAT)), x)


def test_channel_epsilon_norms_agree_with_instance_norm():
    """The rewrite's norm and its XNNPACK form: one per-channel epsilon, same function."""
    from keras_style.core import layers as ks_layers
    from keras_style.export import graph as export_graph
    from keras_style.export import norm as export_norm

    x = np.random.default_rng(0).normal(3.0, 2.0, (2, 5, 6, 4)).astype(np.float32)
    plain = ks_layers.InstanceNormalization(epsilon=1e-3)
    expected = np.asarray(plain(x))
    config = plain.get_config()
    norm = export_norm.ChannelEpsilonNormalization.from_config(config)
    xnn = export_graph.XnnInstanceNormalization(channel_epsilon=True, **config)
    for layer in (norm, xnn):  # the per-channel epsilon starts at the scalar one
        np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-5)
        assert export_norm.has_channel_epsilon(layer) and len(layer.weights) == 3
    eps = np.array([1e-3, 0.5, 2.0, 1e-4], np.float32)
    norm.channel_epsilon.assign(eps)
    xnn.channel_epsilon.assign(eps)
    d = x - x.mean(axis=(1, 2), keepdims=True)
    manual = d / np.sqrt((d * d).mean(axis=(1, 2), keepdims=True) + eps)
    for layer in (norm, xnn):
        np.testing.assert_allclose(np.asarray(layer(x)), manual, rtol=1e-5, atol=1e-5)
    scalar = export_graph.XnnInstanceNormalization(**config)  # a plain norm's XNNPACK form
    np.testing.assert_allclose(np.asarray(scalar(x)), expected, rtol=1e-5, atol=1e-5)
    assert scalar.channel_epsilon is None and not export_norm.has_channel_epsilon(scalar)
    again = export_graph.XnnInstanceNormalization.from_config(xnn.get_config())
    assert again.use_channel_epsilon and not again.float_offset


def test_delegation_finds_what_runs_outside_xnnpack(tiny):
    """The Keras graph as it is splits around MIRROR_PAD; the XNNPACK form runs in one piece."""
    model = tiny[0]
    old = export_convert.convert_model(model, "float32", size=32, xnnpack=False)
    info = export_delegate.delegation(old)
    assert info["partitions"] > 1 and info["outside"]["MIRROR_PAD"] == 16  # one per conv
    assert info["delegated_nodes"] + sum(info["outside"].values()) == info["nodes"]
    assert "outside: " in export_delegate.summary(
        info
    ) and "MIRROR_PAD x16" in export_delegate.summary(info)
    new = export_convert.convert_model(model, "float32", size=32)
    info = export_delegate.delegation(new)
    assert info["partitions"] == 1 and info["outside"] == {}
    assert info["delegated_nodes"] == info["nodes"]
    assert export_delegate.summary(info) == "1 XNNPACK partition, nothing outside"
    image = make_photo(32, 32, seed=4)[None]
    assert metrics.psnr(export_verify.TFLiteRunner(new)(image), _keras(model, image)) > 80.0


@pytest.mark.slow
def test_bundled_style_meets_the_documented_floors():
    """docs/tflite_xnnpack.md: float16 >= 45 dB; int8 >= 30 dB and SSIM >= 0.92 on average.

    A trained network (the bundled udnie style), calibrated on the package's
    example photos at 96 px and measured on them (measured: float16 79.4 dB,
    int8 about 41-45 dB with SSIM 0.996 on photos in the calibration set).
    """
    import keras_style
    from keras_style.core import images
    from keras_style.fast import styles

    examples = Path(keras_style.__file__).parent / "assets" / "examples"
    photos = []
    for name in ("chelsea", "astronaut", "coffee", "rocket"):
        image = images.load_image(examples / f"{name}.jpg")
        side = min(image.shape[:2])
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        photos.append(images.resize(image[top : top + side, left : left + side], (96, 96)))
    photos = np.stack(photos)
    model = styles.load_style("udnie")
    expected = _keras(model, photos)
    for quantization in ("float16", "int8"):
        content = export_convert.convert_model(model, quantization, calibration=photos)
        runner = export_verify.TFLiteRunner(content)
        outputs = [runner(photo[None])[0] for photo in photos]
        psnr = [metrics.psnr(o, e) for o, e in zip(outputs, expected, strict=True)]
        ssim = [metrics.ssim(o, e) for o, e in zip(outputs, expected, strict=True)]
        if quantization == "float16":
            assert min(psnr) >= 45.0, psnr
        else:
            assert np.mean(psnr) >= 30.0 and np.mean(ssim) >= 0.92, (psnr, ssim)
