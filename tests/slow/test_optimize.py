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


def test_init_from_image_changes_the_result(extractor, photo, painting):
    base, _, _ = _run(extractor, photo, [painting], iterations=3, multiscale=False)
    from_image, _, _ = _run(
        extractor, photo, [painting], iterations=3, init=painting, multiscale=False
    )
    assert np.abs(base - from_image).mean() > 1.0


def _mean_period(image):
    """Mean wavelength (pixels) of an image's luminance texture: 1 / its spectral centroid."""
    gray = image.mean(-1) - image.mean()
    power = np.abs(np.fft.fft2(gray)) ** 2
    fy, fx = np.meshgrid(*(np.fft.fftfreq(n) for n in gray.shape), indexing="ij")
    radius = np.hypot(fy, fx)
    return float(np.sum(power) / np.sum(power * radius))


def test_style_scale_above_1_gives_larger_strokes():
    """README: `style_scale` resizes the painting; larger = bigger strokes, smaller = finer.

    Style-only synthesis from noise (seeded random VGG16) of an 8-pixel stripe
    painting: the output's texture wavelength follows the scale (measured:
    about 2.9, 7.2 and 12 px at scales 0.5, 1 and 2; 2.7/6.5/9.8 and
    2.7/5.4/7.6 with other seeds at 20 iterations).
    """
    import keras

    keras.utils.set_random_seed(0)
    extractor = vgg.FeatureExtractor(losses.LossConfig().layers, "vgg16", weights=None)
    stylizer = optimize.GatysStylizer(extractor, losses.LossConfig(content_weight=0, tv_weight=0))
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    stripes = 127.5 + 100 * np.sin(2 * np.pi * (x + 0.3 * y) / 8)
    painting = np.repeat(stripes[..., None], 3, axis=-1)
    flat = np.full((64, 64, 3), 128, np.float32)
    periods = {}
    for scale in (0.5, 1.0, 2.0):
        config = optimize.OptimizeConfig(
            size=64, iterations=30, init="noise", seed=0, style_scale=scale, multiscale=False
        )
        out, _ = stylizer.stylize(flat, [painting], config=config, verbose=0)
        periods[scale] = _mean_period(out)
    assert periods[2.0] > 1.3 * periods[1.0], periods
    assert periods[0.5] < 0.7 * periods[1.0], periods
    assert 4 < periods[1.0] < 12, periods  # close to the painting's own ~7.4 px


def _numpy_gram(features):
    """(1, H, W, C) -> (C, C): features^T features / (H * W), in float64."""
    flat = np.asarray(features, np.float64).reshape(-1, features.shape[-1])
    return flat.T @ flat / len(flat)


def test_style_targets_blend_two_paintings_by_weight(extractor, photo, painting):
    """A 0.7/0.3 blend targets 0.7 * G1 + 0.3 * G2 (weights normalised), unlike either."""
    from conftest import make_painting

    loss = losses.PerceptualLoss(extractor)
    second = make_painting(40, 56, seed=5)[::-1, :, ::-1].copy()
    feats = [extractor(np.asarray(p, np.float32)[None]) for p in (painting, second)]
    for weights in ([0.7, 0.3], [7.0, 3.0]):
        blended = loss.style_targets([painting, second], weights)
        assert sorted(blended) == sorted(losses.LossConfig().style_layers)
        for name, target in blended.items():
            g1, g2 = (_numpy_gram(f[name]) for f in feats)
            target = np.asarray(target, np.float64)[0]
            np.testing.assert_allclose(target, 0.7 * g1 + 0.3 * g2, rtol=1e-4, atol=1e-6)
            scale = np.abs(g1 - g2).mean()
            assert np.abs(target - g1).mean() > 0.2 * scale
            assert np.abs(target - g2).mean() > 0.6 * scale
    # Levels above tile_size compute the same blend in tiles (`tiled_loss`).
    from keras_style.slow import tiled_loss

    big = [make_painting(96, 96, seed=2), make_painting(80, 112, seed=3)[::-1, :, ::-1].copy()]
    tiled = tiled_loss.TiledLoss(loss, extractor.model.variables, tile_size=64)
    targets = tiled.style_targets(big, [0.7, 0.3])
    feats = [extractor(p[None]) for p in big]
    for name, target in targets.items():
        g1, g2 = (_numpy_gram(f[name]) for f in feats)
        np.testing.assert_allclose(target[0], 0.7 * g1 + 0.3 * g2, rtol=1e-3, atol=1e-5)


def test_style_targets_are_taken_from_the_rescaled_painting(extractor, photo, painting):
    """A level's Gram targets come from the painting resized to `style_scale * long_side`."""
    stylizer = optimize.GatysStylizer(extractor)
    contents = photo[None]
    for scale, side in ((1.0, 48), (0.5, 24), (2.0, 96)):
        config = optimize.OptimizeConfig(size=48, style_scale=scale, multiscale=False)
        _, targets = stylizer._targets(contents, [painting], None, 48, config)
        resized = images.resize(painting, (side, side))  # the painting is square
        want = extractor(resized[None])
        for name, target in targets.items():
            np.testing.assert_allclose(
                np.asarray(target)[0], _numpy_gram(want[name]), rtol=1e-4, atol=1e-5
            )


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
