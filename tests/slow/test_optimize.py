"""The iterative (Gatys) stylizer of keras_style.slow.optimize."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_style.core import images, losses, vgg
from keras_style.slow import optimize


@pytest.fixture(scope="module")
def extractor():
    return vgg.FeatureExtractor(losses.LossConfig().layers, "vgg16", weights=None)


def _run(extractor, content, styles, loss_config=None, **options):
    stylizer = optimize.GatysStylizer(extractor, loss_config)
    config = optimize.OptimizeConfig(**{"size": 48, "iterations": 8, **options})
    trace = []
    image, parts = stylizer.stylize(
        content,
        styles,
        config=config,
        verbose=0,
        callback=lambda step, img, p: trace.append(p),
        callback_every=1,
    )
    return image, parts, trace


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_loss_decreases_and_output_is_valid(extractor, photo, painting, optimizer):
    image, parts, trace = _run(extractor, photo, [painting], optimizer=optimizer, multiscale=False)
    assert image.shape == (40, 48, 3) and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 255
    assert len(trace) == 8
    assert trace[-1]["loss"] < 0.8 * trace[0]["loss"]
    assert trace[-1]["style_loss"] < trace[0]["style_loss"]
    assert set(parts) == {"loss", "content_loss", "style_loss", "tv_loss"}


def test_more_style_weight_lowers_style_loss(extractor, photo, painting):
    low = losses.LossConfig(style_weight=1.0)
    high = losses.LossConfig(style_weight=100.0)
    _, parts_low, _ = _run(extractor, photo, [painting], low, multiscale=False)
    _, parts_high, _ = _run(extractor, photo, [painting], high, multiscale=False)
    assert parts_high["style_loss"] < parts_low["style_loss"]
    assert parts_high["content_loss"] > parts_low["content_loss"]


def test_preserve_color_keeps_chrominance(extractor, photo, painting):
    from keras import ops

    image, _, _ = _run(extractor, photo, [painting], preserve_color=True, multiscale=False)
    plain, _, _ = _run(extractor, photo, [painting], preserve_color=False, multiscale=False)
    chroma = lambda x: ops.convert_to_numpy(images.rgb_to_yuv(x))[..., 1:]  # noqa: E731
    err_kept = np.abs(chroma(image) - chroma(photo)).mean()
    err_plain = np.abs(chroma(plain) - chroma(photo)).mean()
    assert err_kept < 0.5 * err_plain


def test_seed_makes_noise_init_repeatable(extractor, photo, painting):
    a, _, _ = _run(extractor, photo, [painting], init="noise", seed=3, iterations=3)
    b, _, _ = _run(extractor, photo, [painting], init="noise", seed=3, iterations=3)
    c, _, _ = _run(extractor, photo, [painting], init="noise", seed=4, iterations=3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1.0


def test_init_from_image_and_style_scale_change_the_result(extractor, photo, painting):
    base, _, _ = _run(extractor, photo, [painting], iterations=3, multiscale=False)
    from_image, _, _ = _run(
        extractor, photo, [painting], iterations=3, init=painting, multiscale=False
    )
    scaled, _, _ = _run(
        extractor, photo, [painting], iterations=3, style_scale=0.5, multiscale=False
    )
    assert np.abs(base - from_image).mean() > 1.0
    assert np.abs(base - scaled).mean() > 0.1


def test_style_blend_with_zero_weight_equals_single_style(extractor, photo, painting):
    single, _, _ = _run(extractor, photo, [painting], iterations=3, multiscale=False)
    stylizer = optimize.GatysStylizer(extractor)
    blended, _ = stylizer.stylize(
        photo,
        [painting, photo],
        [1.0, 0.0],
        optimize.OptimizeConfig(size=48, iterations=3, multiscale=False),
        verbose=0,
    )
    np.testing.assert_allclose(blended, single, atol=1e-3)


def test_multiscale_pyramid(extractor, photo, painting, monkeypatch):
    assert optimize.pyramid_sizes(384) == [384]
    assert optimize.pyramid_sizes(1024) == [512, 1024]
    assert optimize.pyramid_sizes(2048) == [512, 1024, 2048]
    assert optimize.pyramid_sizes(2048, multiscale=False) == [2048]
    assert optimize.level_iterations(100, 3) == [100, 50, 25]
    monkeypatch.setattr(optimize, "MIN_PYRAMID_SIZE", 32)
    image, _, trace = _run(extractor, photo, [painting], size=64, iterations=4)
    assert image.shape == (53, 64, 3)
    assert len(trace) == 4 + 2  # 32 px level, then 64 px with half the iterations


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizer": "sgd"}, "Unknown optimizer"),
        ({"init": "zeros"}, "Unknown init"),
        ({"iterations": 0}, "iterations"),
        ({"size": 4}, "size"),
        ({"style_scale": 0}, "style_scale"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        optimize.OptimizeConfig(**kwargs)


@pytest.mark.slow
def test_stylize_under_the_jax_backend(tmp_path):
    script = textwrap.dedent(
        """
        import numpy as np, keras
        assert keras.backend.backend() == "jax"
        from keras_style.core import losses
        from keras_style.slow import optimize
        from keras_style.core import vgg
        rng = np.random.default_rng(0)
        content = rng.uniform(0, 255, (32, 32, 3)).astype("float32")
        style = rng.uniform(0, 255, (32, 32, 3)).astype("float32")
        ex = vgg.FeatureExtractor(losses.LossConfig().layers, "vgg16", weights=None)
        trace = []
        for opt in ("lbfgs", "adam"):
            img, parts = optimize.GatysStylizer(ex).stylize(
                content, [style], config=optimize.OptimizeConfig(
                    size=32, iterations=5, optimizer=opt), verbose=0,
                callback=lambda s, i, p: trace.append(p["loss"]), callback_every=1)
            assert img.shape == (32, 32, 3) and np.isfinite(img).all()
            assert trace[-1] < trace[0], trace
            trace.clear()
        print("OK")
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


def test_lbfgs_first_step_is_scaled_to_pixels(extractor, photo, painting):
    """With pixels in scaled units, L-BFGS accepts its trial steps: ~1 evaluation each."""
    stylizer = optimize.GatysStylizer(extractor)
    config = optimize.OptimizeConfig(size=48, iterations=12, multiscale=False)
    trace = []
    stylizer.stylize(
        photo,
        [painting],
        config=config,
        verbose=0,
        callback=lambda *a: trace.append(a[2]),
        callback_every=1,
    )
    assert len(trace) == 12  # no early stop in a failed line search
    assert stylizer.evaluations <= 12 + 4


def test_color_matched_init_starts_closer_to_the_style(extractor, photo, painting):
    first = {}
    for init in ("content", "color_matched"):
        _, _, trace = _run(extractor, photo, [painting], init=init, iterations=1, multiscale=False)
        first[init] = trace[0]["style_loss"]
    assert first["color_matched"] < first["content"]
