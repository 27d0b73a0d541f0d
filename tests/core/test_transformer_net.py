"""Tests for keras_style.core.transformer_net: sizes, range, widths, serialization, backends."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_style.core import layers as ks_layers
from keras_style.core import transformer_net
from keras_style.core.transformer_net import TransformerNet, build_transformer_net


@pytest.fixture(scope="module")
def net():
    return build_transformer_net(width=0.25)


def _images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def _run_python(code, **env):
    """Runs `code` in a fresh interpreter (optionally another Keras backend); returns stdout."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=False,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("shape", [(1, 5, 5, 3), (2, 17, 33, 3), (3, 31, 8, 3), (1, 64, 48, 3)])
def test_output_has_input_shape_and_pixel_range(net, shape):
    y = np.asarray(net(_images(shape)))
    assert y.shape == shape
    assert y.dtype == np.float32
    assert y.min() >= 0.0 and y.max() <= 255.0


def test_input_signature_is_dynamic(net):
    assert tuple(net.input_shape) == (None, None, None, 3)
    assert tuple(net.output_shape) == (None, None, None, 3)


def test_traced_with_dynamic_shapes_matches_eager(net):
    """The export path: one graph for every size, as a SavedModel signature has."""
    fn = tf.function(net, input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    for shape in [(1, 9, 14, 3), (2, 20, 20, 3)]:
        x = _images(shape)
        np.testing.assert_allclose(fn(x).numpy(), np.asarray(net(x)), atol=1e-2)


def test_architecture_follows_the_paper():
    model = build_transformer_net(width=1.0)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.kernel_size for c in (convs[0], convs[-1])] == [(9, 9), (9, 9)]
    assert [c.filters for c in convs[:3]] == [32, 64, 128]
    assert [c.strides for c in convs[:3]] == [(1, 1), (2, 2), (2, 2)]
    assert [c.filters for c in convs[-3:]] == [64, 32, 3]
    assert len(convs) == 3 + 2 * 5 + 3
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == 5
    assert sum(isinstance(layer, ks_layers.NearestUpsampling2D) for layer in model.layers) == 2
    assert not any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in model.layers)
    assert all(conv.padding == "valid" for conv in convs), "padding is done by reflection"


def test_width_multiplier_shrinks_the_network():
    counts = {w: build_transformer_net(width=w).count_params() for w in transformer_net.WIDTHS}
    assert counts[1.0] > 3 * counts[0.5] > 9 * counts[0.25]
    assert 1_500_000 < counts[1.0] < 1_800_000


@pytest.mark.parametrize("width", [0.3, 2.0, "1.0"])
def test_rejects_unknown_width(width):
    with pytest.raises(ValueError, match="width"):
        build_transformer_net(width=width)


def test_config_is_the_constructor_arguments(net):
    config = net.get_config()
    assert config == {"width": 0.25, "head": "tanh", "name": "transformer_net", "trainable": True}
    clone = TransformerNet.from_config(config)
    assert clone.count_params() == net.count_params()
    # Configs saved before the head option existed rebuild the tanh network.
    del config["head"]
    assert TransformerNet.from_config(config).head == "tanh"


def test_clip_head_same_weights_valid_range_and_round_trip(net, tmp_path):
    keras.utils.set_random_seed(3)
    clip = build_transformer_net(width=0.25, head="clip")
    assert clip.count_params() == net.count_params()
    assert "head_clip" in [layer.name for layer in clip.layers]
    for source, target in zip(clip.weights, net.weights, strict=True):
        source.assign(target.numpy() * 4.0)  # large pre-activations: many clipped pixels
    images = np.random.default_rng(0).uniform(0, 255, (2, 20, 24, 3)).astype("float32")
    out = clip.predict_on_batch(images)
    assert out.min() == 0.0 and out.max() == 255.0  # clipped, not squashed
    path = tmp_path / "clip.keras"
    clip.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.head == "clip"
    np.testing.assert_allclose(loaded.predict_on_batch(images), out, atol=1e-3)
    with pytest.raises(ValueError, match="head must be one of"):
        build_transformer_net(head="sigmoid")


def test_residual_head_starts_as_identity_learns_a_change_and_round_trips(net, tmp_path):
    keras.utils.set_random_seed(4)
    residual = build_transformer_net(width=0.25, head="residual")
    assert residual.count_params() == net.count_params()
    images = np.random.default_rng(1).uniform(0, 255, (2, 21, 26, 3)).astype("float32")
    np.testing.assert_array_equal(residual.predict_on_batch(images), images)  # odd sizes too
    # One Adam run towards "the photo, 30 levels brighter, clipped": the change is learnt.
    target = np.clip(images + 30.0, 0.0, 255.0)
    residual.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mae")
    first = residual.evaluate(images, target, verbose=0)
    residual.fit(images, target, epochs=40, batch_size=2, verbose=0)
    out = residual.predict_on_batch(images)
    assert first > 20.0 and np.abs(out - target).mean() < 0.5 * first
    assert out.min() >= 0.0 and out.max() <= 255.0
    path = tmp_path / "residual.keras"
    residual.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.head == "residual"
    np.testing.assert_allclose(loaded.predict_on_batch(images), out, atol=1e-3)


def test_save_load_round_trip_in_a_fresh_process(net, tmp_path):
    path = tmp_path / "net.keras"
    net.save(path)
    x = _images((1, 13, 22, 3), seed=1)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.asarray(net(x)))
    out = _run_python(
        f"""
        import sys
        import keras_style
        assert "keras" not in sys.modules  # the plain import stays light
        import keras, numpy as np
        import keras_style.core.transformer_net  # registers the serializables
        model = keras.saving.load_model({str(path)!r})
        x, y = np.load({str(tmp_path / "x.npy")!r}), np.load({str(tmp_path / "y.npy")!r})
        print(type(model).__name__, float(np.abs(np.asarray(model(x)) - y).max()))
        """
    )
    name, diff = out.split()[-2:]
    assert name == "TransformerNet"
    assert float(diff) < 1e-3


def test_import_after_keras_registers_the_network(net, tmp_path):
    path = tmp_path / "net.keras"
    net.save(path)
    out = _run_python(
        f"""
        import keras
        import keras_style
        print(type(keras.saving.load_model({str(path)!r})).__name__)
        """
    )
    assert out.split()[-1] == "TransformerNet"


@pytest.mark.slow
def test_runs_under_jax_and_loads_under_tensorflow(tmp_path):
    """Built and saved under JAX (odd sizes, a batch); reloaded here under TensorFlow."""
    path = tmp_path / "jax_net.keras"
    out = _run_python(
        f"""
        import keras, numpy as np
        from keras_style.core.transformer_net import build_transformer_net
        assert keras.backend.backend() == "jax"
        net = build_transformer_net(width=0.25)
        x = np.random.default_rng(0).uniform(0, 255, (2, 11, 19, 3)).astype("float32")
        y = np.asarray(net(x))
        assert y.shape == x.shape and 0 <= y.min() and y.max() <= 255, (y.shape, y.min())
        net.save({str(path)!r})
        np.save({str(tmp_path / "y.npy")!r}, y)
        print("jax ok")
        """,
        KERAS_BACKEND="jax",
    )
    assert "jax ok" in out
    model = keras.saving.load_model(path)
    x = np.random.default_rng(0).uniform(0, 255, (2, 11, 19, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x)), np.load(tmp_path / "y.npy"), atol=1e-2)
