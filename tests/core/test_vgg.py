"""The frozen VGG feature extractor of keras_style.core.vgg."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_style.core import vgg


def test_preprocess_round_trip_and_convention():
    rgb = np.random.default_rng(0).uniform(0, 255, (2, 3, 4, 3)).astype(np.float32)
    bgr = ops.convert_to_numpy(vgg.preprocess(rgb))
    np.testing.assert_allclose(bgr[..., 0], rgb[..., 2] - vgg.IMAGENET_MEAN_BGR[0], rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(vgg.deprocess(bgr)), rgb, atol=1e-4)
    # Same as Keras' own preprocessing (which edits numpy input in place: pass a copy).
    expected = keras.applications.vgg19.preprocess_input(rgb.copy())
    np.testing.assert_allclose(bgr, expected, atol=1e-4)


def test_extractor_outputs_requested_layers_only_and_is_frozen():
    extractor = vgg.FeatureExtractor(["block3_conv1", "block1_conv1"], "vgg16", weights=None)
    features = extractor(np.zeros((2, 32, 40, 3), np.float32))
    assert set(features) == {"block1_conv1", "block3_conv1"}
    assert tuple(features["block3_conv1"].shape) == (2, 8, 10, 256)
    assert not extractor.model.trainable_weights
    assert "block4_conv1" not in [layer.name for layer in extractor.model.layers]


def test_vgg19_has_its_extra_layers():
    extractor = vgg.FeatureExtractor(["block3_conv4"], "vgg19", weights=None)
    assert tuple(extractor(np.zeros((1, 16, 16, 3), np.float32))["block3_conv4"].shape)[-1] == 256


def test_bad_options():
    with pytest.raises(ValueError, match="Unknown backbone"):
        vgg.FeatureExtractor(["block1_conv1"], "resnet", weights=None)
    with pytest.raises(ValueError, match="block3_conv4"):
        vgg.FeatureExtractor(["block3_conv4"], "vgg16", weights=None)
    with pytest.raises(ValueError, match="not found"):
        vgg.FeatureExtractor(["block1_conv1"], "vgg16", weights="/no/such/file.h5")


def test_local_weights_file_is_loaded(vgg16_weights_file):
    a = vgg.FeatureExtractor(["block2_conv1"], "vgg16", weights=str(vgg16_weights_file))
    b = vgg.FeatureExtractor(["block2_conv1"], "vgg16", weights=vgg16_weights_file)
    x = np.random.default_rng(0).uniform(0, 255, (1, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(
        ops.convert_to_numpy(a(x)["block2_conv1"]), ops.convert_to_numpy(b(x)["block2_conv1"])
    )
    with pytest.raises(ValueError, match="backbone"):
        vgg.FeatureExtractor(["block1_conv1"], "vgg19", weights=vgg16_weights_file)


def test_download_failure_explains_how_to_use_local_weights(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.applications, "VGG19", offline)
    with pytest.raises(vgg.WeightsUnavailableError, match="vgg_weights=PATH"):
        vgg.FeatureExtractor(["block1_conv1"], "vgg19", weights="imagenet")


def test_bfloat16_extractor_matches_float32_and_returns_float32(vgg16_weights_file):
    layers = ["block1_conv1", "block3_conv1"]
    f32 = vgg.FeatureExtractor(layers, "vgg16", vgg16_weights_file, precision="float32")
    bf16 = vgg.FeatureExtractor(layers, "vgg16", vgg16_weights_file, precision="bfloat16")
    x = np.random.default_rng(0).uniform(0, 255, (2, 24, 32, 3)).astype(np.float32)
    a, b = f32(x), bf16(x)
    for name in layers:
        assert b[name].dtype == "float32"
        ref, got = ops.convert_to_numpy(a[name]), ops.convert_to_numpy(b[name])
        assert np.abs(got - ref).max() <= 0.02 * np.abs(ref).max(), name
    # The first convolution sees full-precision pixels.
    np.testing.assert_allclose(
        ops.convert_to_numpy(b["block1_conv1"]), ops.convert_to_numpy(a["block1_conv1"]), atol=1e-3
    )
    assert not bf16.model.trainable_weights


def test_precision_resolution(monkeypatch):
    assert vgg.resolve_precision("float32") == "float32"
    assert vgg.resolve_precision("bfloat16") == "bfloat16"
    monkeypatch.setattr(vgg, "_on_accelerator", lambda: False)
    monkeypatch.setattr(vgg, "_cpu_has_bf16", lambda: False)
    assert vgg.resolve_precision("auto") == "float32"
    monkeypatch.setattr(vgg, "_cpu_has_bf16", lambda: True)
    assert vgg.resolve_precision("auto") == "bfloat16"
    with pytest.raises(ValueError, match="Unknown precision 'float16'"):
        vgg.resolve_precision("float16")


@pytest.mark.parametrize(
    "vendor, flags, fast",
    [
        ("GenuineIntel", "fma avx2 avx512f avx512_bf16 amx_bf16 amx_tile", True),
        ("GenuineIntel", "fma avx2 avx512f avx512_bf16 avx512_vnni", False),
        ("AuthenticAMD", "fma avx2 avx512f avx512_bf16 avx512_vnni", True),
        ("AuthenticAMD", "fma avx2", False),
    ],
)
def test_bf16_rule_reads_vendor_and_flags_from_cpuinfo(tmp_path, vendor, flags, fast):
    # Measured (docs/precision/): faster with AMX, and on AMD Zen 4 with AVX512_BF16;
    # slower on Intel AVX512_BF16 without AMX and wherever it is emulated.
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        f"processor\t: 0\nvendor_id\t: {vendor}\nmodel name\t: X\nflags\t\t: {flags}\n\n"
        f"processor\t: 1\nvendor_id\t: {vendor}\nflags\t\t: {flags}\n"
    )
    assert vgg._cpu_has_bf16(str(cpuinfo)) is fast
    assert vgg._cpu_has_bf16(str(tmp_path / "missing")) is False


def test_extractor_runs_only_as_deep_as_the_layers_asked_for():
    extractor = vgg.FeatureExtractor(["block1_conv2", "block3_conv1"], "vgg16", weights=None)
    images = np.random.RandomState(0).uniform(0, 255, (2, 24, 24, 3)).astype(np.float32)
    full = extractor(images)
    shallow = extractor(images, layers=["block1_conv2"])
    assert list(shallow) == ["block1_conv2"]
    np.testing.assert_allclose(
        ops.convert_to_numpy(shallow["block1_conv2"]), ops.convert_to_numpy(full["block1_conv2"])
    )
    cut = extractor._subset(["block1_conv2"])
    assert "block2_conv1" not in [layer.name for layer in cut.layers]
    with pytest.raises(ValueError, match="block4_conv1"):
        extractor(images, layers=["block4_conv1"])


def test_native_dtype_features_are_uncast():
    extractor = vgg.FeatureExtractor(["block2_conv1"], "vgg16", weights=None, precision="bfloat16")
    images = np.zeros((1, 16, 16, 3), np.float32)
    assert keras.backend.standardize_dtype(extractor(images)["block2_conv1"].dtype) == "float32"
    native = extractor(images, native_dtype=True)["block2_conv1"]
    assert keras.backend.standardize_dtype(native.dtype) == "bfloat16"
