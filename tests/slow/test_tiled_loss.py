"""The tiled loss and gradient of keras_style.slow.tiled_loss, and tiling in GatysStylizer."""

import numpy as np
import pytest
from conftest import make_photo
from keras import ops

from keras_style.core import losses, vgg
from keras_style.slow import optimize, tiled_loss

#: Layers shallow enough for a small halo (block3_conv1: stride 4, margin 10 px).
SHALLOW = losses.LossConfig(
    content_layers={"block3_conv1": 1.0},
    style_layers={"block1_conv1": 1.0, "block2_conv1": 0.5, "block3_conv1": 1.0},
)


@pytest.fixture(scope="module")
def extractor():
    return vgg.FeatureExtractor(losses.LossConfig().layers, "vgg16", weights=None)


def _batch(height, width, n):
    contents = np.stack([make_photo(height, width, seed=s) for s in range(n)])
    noise = np.random.default_rng(0).normal(0, 20, contents.shape)
    return contents, np.clip(contents + noise, 0, 255).astype(np.float32)


def _compare(extractor, loss_config, painting, shape, tile_size, n):
    """Tiled vs untiled (total, parts, grad) on a noisy batch: relative errors."""
    stylizer = optimize.GatysStylizer(extractor, loss_config)
    tiled = tiled_loss.TiledLoss(stylizer.loss, stylizer.variables, tile_size)
    assert len(tiled.tiles(*shape)) > 1
    contents, x = _batch(*shape, n)
    untiled_targets = (
        stylizer.loss.content_targets(ops.convert_to_tensor(contents)),
        stylizer.loss.style_targets([painting]),
    )
    targets = (tiled.content_targets(contents), tiled.style_targets([painting]))
    for name, value in untiled_targets[1].items():
        np.testing.assert_allclose(targets[1][name], ops.convert_to_numpy(value), rtol=1e-4)
    expected = stylizer.step(ops.convert_to_tensor(x), *untiled_targets)
    total, parts, grad = tiled.step(x, *targets)
    np.testing.assert_allclose(float(total), float(expected[0]), rtol=1e-4)
    assert set(parts) == set(expected[1])
    for name, value in expected[1].items():
        np.testing.assert_allclose(float(parts[name]), float(value), rtol=1e-4)
    grad, want = ops.convert_to_numpy(grad), ops.convert_to_numpy(expected[2])
    assert grad.shape == x.shape and grad.dtype == np.float32
    return np.linalg.norm(grad - want) / np.linalg.norm(want)


def test_tiled_step_equals_untiled_for_a_batch(extractor, painting):
    assert _compare(extractor, SHALLOW, painting, (64, 96), 56, n=2) < 1e-4


def test_tiled_step_equals_untiled_at_block5(extractor, painting):
    """Default layers: stride-16 alignment and the 64 px receptive-field halo of VGG16."""
    assert _compare(extractor, None, painting, (64, 288), 192, n=1) < 1e-4


def test_layer_geometry_and_default_halo(extractor):
    geometry = tiled_loss.layer_geometry(extractor.model, ["block1_conv1", "block5_conv1"])
    assert geometry == {"block1_conv1": (1, 1), "block5_conv1": (16, 58)}
    tiled = tiled_loss.TiledLoss(losses.PerceptualLoss(extractor), extractor.model.variables)
    assert (tiled.halo, tiled.align) == (64, 16)


@pytest.mark.parametrize(
    "length, tile_size", [(2048, 1024), (1362, 1024), (1000, 512), (300, 64), (70, 64)]
)
def test_split_axis_partitions_with_few_window_lengths(length, tile_size):
    halo, align = 64, 16
    spans = tiled_loss.split_axis(length, tile_size, halo, align)
    assert [s[2] for s in spans][0] == 0 and spans[-1][3] == length
    assert all(a[3] == b[2] for a, b in zip(spans, spans[1:], strict=False))  # a partition
    for start, end, i0, i1 in spans:
        assert start % align == 0 and i0 % align == 0
        assert start == 0 or start <= i0 - halo
        assert end == length or end >= i1 + halo
    assert len({end - start for start, end, _, _ in spans}) <= 2
    if tile_size >= 2 * halo + align:  # windows bounded by the tile size
        assert all(end - start < tile_size + align for start, end, _, _ in spans)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_tiled_stylize_matches_untiled(extractor, painting, optimizer):
    photo = make_photo(80, 112)
    stylizer = optimize.GatysStylizer(extractor, SHALLOW)
    results = {}
    for tile_size in (None, 64):
        trace = []
        config = optimize.OptimizeConfig(
            size=112, iterations=5, multiscale=False, optimizer=optimizer, tile_size=tile_size
        )
        results[tile_size], _ = stylizer.stylize(
            photo,
            [painting],
            config=config,
            verbose=0,
            callback=lambda step, image, parts: trace.append(parts["loss"]),  # noqa: B023
            callback_every=1,
        )
        assert trace[-1] < 0.9 * trace[0]
    assert list(stylizer._tiled_losses) == [64]  # the tiled run really was tiled
    assert results[64].shape == results[None].shape == photo.shape
    # Equal up to rounding, which the optimizers amplify at a few pixels (Adam
    # normalises near-zero gradients): compare the mean difference.
    assert np.abs(results[64] - results[None]).mean() < 0.05


@pytest.mark.parametrize("tile_size", [0, 32, 100.5, "512", True])
def test_invalid_tile_size(tile_size):
    with pytest.raises(ValueError, match="tile_size"):
        optimize.OptimizeConfig(tile_size=tile_size)


def test_valid_tile_sizes():
    assert optimize.OptimizeConfig(tile_size=None).tile_size is None
    assert optimize.OptimizeConfig(tile_size=64).tile_size == 64
    assert optimize.OptimizeConfig().tile_size == 1024


def test_command_line_tile_size(tmp_path, photo_file, painting_file, vgg16_weights_file):
    from keras_style import cli

    def run(tile_size):
        out = tmp_path / f"out_{tile_size}.png"
        argv = ["stylize", str(photo_file), str(painting_file), "-o", str(out), "--size", "96"]
        argv += [
            "--iterations",
            "2",
            "--backbone",
            "vgg16",
            "--vgg-weights",
            str(vgg16_weights_file),
        ]
        return cli.main([*argv, "--tile-size", tile_size, "-q"]), out.exists()

    assert run("64") == (0, True)  # a 96 px level in 64 px tiles
    assert run("32") == (2, False)  # too small: one error line, exit status 2
    args = cli.build_parser().parse_args(["stylize", "a", "-o", "b", "--tile-size", "0"])
    assert args.tile_size is None


def test_tone_term_is_refused_not_ignored(extractor):
    loss = losses.PerceptualLoss(extractor, losses.LossConfig(tone_weight=1.0))
    with pytest.raises(ValueError, match="no tone term"):
        tiled_loss.TiledLoss(loss, extractor.model.variables)
