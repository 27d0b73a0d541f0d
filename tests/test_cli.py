"""The `keras-style` command line, end to end on tiny images."""

import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_style import cli
from keras_style.core import images


def _stylize_args(photo_file, painting_file, out, weights, *extra):
    return [
        "stylize",
        str(photo_file),
        str(painting_file),
        "-o",
        str(out),
        "--size",
        "32",
        "--iterations",
        "2",
        "--backbone",
        "vgg16",
        "--vgg-weights",
        str(weights),
        "-q",
        *extra,
    ]


def test_console_script_error_is_one_stderr_line(tmp_path, painting_file):
    """TensorFlow's native start-up log lines must not reach the user's stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "keras_style.cli", "stylize", str(tmp_path / "missing.jpg")]
        + [str(painting_file), "-o", str(tmp_path / "out.png"), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"keras-style: error: Image file not found: {tmp_path / 'missing.jpg'}"
    ]


@pytest.mark.slow
def test_console_script_end_to_end(tmp_path, photo_file, painting_file, vgg16_weights_file):
    out = tmp_path / "out.png"
    cmd = [sys.executable, "-m", "keras_style.cli"]
    result = subprocess.run(
        cmd + _stylize_args(photo_file, painting_file, out, vgg16_weights_file, "--seed", "1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    image = images.load_image(out)
    assert image.shape == (27, 32, 3)


def test_in_process_options(tmp_path, monkeypatch, photo_file, painting_file, vgg16_weights_file):
    """Each slow-path option given on the command line changes what is computed."""
    from conftest import make_painting
    from PIL import Image

    from keras_style.slow import optimize

    other = tmp_path / "other.png"  # a second, differently coloured and textured painting
    Image.fromarray(make_painting(seed=7)[:, ::-1, ::-1].astype(np.uint8)).save(other)
    adam_calls = []
    real_adam = optimize.run_adam

    def spy_adam(step, x0, targets, iterations, learning_rate, report):
        adam_calls.append((iterations, learning_rate))
        return real_adam(step, x0, targets, iterations, learning_rate, report)

    monkeypatch.setattr(optimize, "run_adam", spy_adam)

    def run(name, *extra, paintings=(painting_file,)):
        out = tmp_path / f"{name}.png"
        args = _stylize_args(photo_file, paintings[0], out, vgg16_weights_file, *extra)
        args[2:3] = [str(p) for p in paintings]
        assert cli.main(args) == 0
        return images.load_image(out)

    # --optimizer adam (and --learning-rate) reach Adam; the default is L-BFGS.
    base = run("base")
    assert adam_calls == []
    adam = run("adam", "--optimizer", "adam", "--learning-rate", "3")
    assert adam_calls == [(2, 3.0)]
    assert np.abs(adam - base).mean() > 0.5

    # --preserve-color: the output keeps the photo's chrominance (YUV's U and V).
    from keras import ops

    def chroma(x):
        return ops.convert_to_numpy(images.rgb_to_yuv(x))[..., 1:]

    photo = images.resize(images.load_image(photo_file), base.shape[:2])
    kept = run("kept", "--preserve-color")
    assert np.abs(chroma(kept) - chroma(photo)).mean() < 1.5  # 8-bit rounding and clipping
    assert np.abs(chroma(base) - chroma(photo)).mean() > 5.0

    # --style-weights: 1,0 is the first painting alone, 0,1 the second alone.
    both = (painting_file, other)
    first_only = run("w10", "--style-weights", "1,0", paintings=both)
    second_only = run("w01", "--style-weights", "0,1", paintings=both)
    alone = run("second_alone", paintings=(other,))
    np.testing.assert_allclose(first_only, base, atol=1.0)
    np.testing.assert_allclose(second_only, alone, atol=1.0)
    assert np.abs(first_only - second_only).mean() > 5.0

    # --style-scale: the painting's features are taken at another size.
    scaled = run("scaled", "--style-scale", "0.5")
    assert np.abs(scaled - base).mean() > 0.5

    # --save-every / --intermediate-dir write the intermediate steps.
    run("steps", "--save-every", "1", "--intermediate-dir", str(tmp_path / "steps"))
    assert len(list((tmp_path / "steps").glob("step_*.png"))) == 2


def _error(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("keras-style: error:")
    return err


def test_bad_inputs_exit_2_with_one_line(
    tmp_path, capsys, photo_file, painting_file, vgg16_weights_file
):
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image")
    out = tmp_path / "out.png"
    assert "not a readable image" in _error(
        capsys, _stylize_args(fake, painting_file, out, vgg16_weights_file)
    )
    assert "not found" in _error(
        capsys, _stylize_args(tmp_path / "none.png", painting_file, out, vgg16_weights_file)
    )
    assert "unknown image suffix" in _error(
        capsys, _stylize_args(photo_file, painting_file, tmp_path / "o.xyz", vgg16_weights_file)
    )
    assert "give at least one painting" in _error(
        capsys, ["stylize", str(photo_file), "-o", "x.png"]
    )
    assert not out.exists()


def test_never_overwrites_an_input_unless_asked(
    tmp_path, capsys, photo_file, painting_file, vgg16_weights_file
):
    before = photo_file.read_bytes()
    args = _stylize_args(photo_file, painting_file, photo_file, vgg16_weights_file)
    assert "overwrite the input" in _error(capsys, args)
    assert photo_file.read_bytes() == before
    assert cli.main(args + ["--overwrite-input"]) == 0
    assert photo_file.read_bytes() != before


def test_missing_imagenet_weights_message(tmp_path, capsys, photo_file, painting_file, monkeypatch):
    from keras_style.slow import cache

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure")

    monkeypatch.setattr(keras.applications, "VGG19", offline)
    monkeypatch.setattr(cache, "_EXTRACTORS", {})
    monkeypatch.setattr(cache, "_STYLIZERS", {})
    err = _error(
        capsys, ["stylize", str(photo_file), str(painting_file), "-o", str(tmp_path / "o.png")]
    )
    assert "--vgg-weights PATH" in err


def test_python_api_returns_an_image(photo, painting, vgg16_weights_file, tmp_path):
    import keras_style

    out = keras_style.stylize(
        photo,
        painting,
        size=32,
        iterations=2,
        backbone="vgg16",
        vgg_weights=vgg16_weights_file,
        verbose=0,
        output=tmp_path / "x.png",
    )
    assert out.shape == (27, 32, 3) and out.dtype == np.float32
    assert (tmp_path / "x.png").exists()
    with pytest.raises(ValueError, match="needs a style"):
        keras_style.stylize(photo, None)


def test_readme_main_job_bundled_style_offline(tmp_path):
    """README command 1: a bundled example photo, a bundled style, no network, no weights."""
    photo = cli.__file__.replace("cli.py", "assets/examples/chelsea.jpg")
    out = tmp_path / "chelsea_great_wave.png"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KERAS_HOME": str(tmp_path / "k")}
    result = subprocess.run(
        [sys.executable, "-m", "keras_style.cli", "stylize", photo, "--style", "great_wave"]
        + ["-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    stylized, original = images.load_image(out), images.load_image(photo)
    assert stylized.shape == original.shape
    assert np.abs(stylized - original).mean() > 10
    # Nothing downloaded into the Keras cache (Keras itself only writes its keras.json).
    cached = [p.name for p in (tmp_path / "k").rglob("*") if p.is_file()]
    assert set(cached) <= {"keras.json"}


@pytest.mark.parametrize("shape", [(12, 1500), (1500, 12), (3, 3)])
def test_very_thin_or_tiny_photo_stylizes_on_every_path(
    tmp_path, shape, painting_file, vgg16_weights_file
):
    """A 1500x12 photo used to end in a traceback (a max-pool on a 1-pixel-high map)."""
    thin = tmp_path / f"thin_{shape[1]}x{shape[0]}.png"
    images.save_image(np.full((*shape, 3), 120.0, np.float32), thin)
    for extra in ([], ["--no-multiscale"], ["--optimizer", "adam"]):
        out = tmp_path / "slow.png"
        args = _stylize_args(thin, painting_file, out, vgg16_weights_file, *extra)
        args[args.index("--size") + 1] = "128"
        assert cli.main(args) == 0
        expected = images.fit_size(shape, long_side=128)
        assert images.load_image(out).shape == (*expected, 3)
    out = tmp_path / "fast.png"
    assert cli.main(["stylize", str(thin), "--style", "udnie", "-o", str(out), "-q"]) == 0
    assert images.load_image(out).shape == (*shape, 3)


def test_serve_bad_options_exit_2(capsys):
    err = _error(capsys, ["serve", "--port", "70000"])
    assert "--port" in err
    err = _error(capsys, ["serve", "--model", "missing.keras"])
    assert "not found" in err


@pytest.mark.slow
def test_serve_prints_its_url_and_answers(tmp_path):
    pytest.importorskip("uvicorn")
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_style.cli", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/styles") as r:
                    assert "udnie" in r.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.3)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_ordinary_photos_are_not_padded_for_the_slow_path(photo):
    from keras_style import api
    from keras_style.slow import optimize

    padded, crop = api._pad_thin(photo, optimize.OptimizeConfig(size=32))  # 27x32 at the level
    assert padded is photo and crop(photo) is photo
    padded, crop = api._pad_thin(photo[:4], optimize.OptimizeConfig(size=48))
    assert padded.shape == (16, 48, 3) and crop(padded).shape == (4, 48, 3)


def _forward(model, photo):
    """The network's own output for one photo, straight from Keras (no stylizer code)."""
    return np.clip(keras.ops.convert_to_numpy(model(photo[None], training=False))[0], 0, 255)


def test_python_api_model_and_bundled_style(tmp_path, photo, photo_file):
    """`stylize(..., model=...)` and `stylize(..., style=NAME)` run that network on the photo."""
    import json
    from pathlib import Path

    import keras_style
    from keras_style.core.transformer_net import TransformerNet, build_transformer_net

    keras.utils.set_random_seed(0)
    net = build_transformer_net(width=0.25)
    path = tmp_path / "net.keras"
    net.save(path)
    expected = _forward(net, photo)
    for model in (path, str(path), net):
        out = keras_style.stylize(photo, model=model, precision="float32")
        np.testing.assert_allclose(out, expected, atol=0.05)
    assert np.abs(expected - photo).mean() > 10  # a random network changes the photo

    styles_dir = Path(keras_style.__file__).parent / "assets" / "styles"
    card = json.loads((styles_dir / "udnie.json").read_text())
    udnie = TransformerNet(width=card["width"], head=card.get("head", "tanh"))
    udnie.load_weights(styles_dir / "udnie.weights.h5")
    from_file = images.load_image(photo_file)
    out = keras_style.stylize(photo_file, style="udnie", precision="float32")
    np.testing.assert_allclose(out, _forward(udnie, from_file), atol=0.05)
    assert np.abs(out - _forward(net, from_file)).mean() > 5  # not just any network
    with pytest.raises(ValueError, match="not both"):
        keras_style.stylize(photo, "udnie", model=path)


def test_cli_stylize_with_a_model_file(tmp_path, photo_file):
    """`keras-style stylize PHOTO --model model.keras -o OUT.png` writes that network's output."""
    from keras_style.core.transformer_net import build_transformer_net

    keras.utils.set_random_seed(1)
    net = build_transformer_net(width=0.25)
    path = tmp_path / "net.keras"
    net.save(path)
    out = tmp_path / "out.png"
    args = ["stylize", str(photo_file), "--model", str(path), "-o", str(out), "-q"]
    assert cli.main(args + ["--precision", "float32"]) == 0
    expected = _forward(net, images.load_image(photo_file))
    np.testing.assert_allclose(images.load_image(out), np.round(expected), atol=1.0)
    half = tmp_path / "half.png"
    args = ["stylize", str(photo_file), "--model", str(path), "-o", str(half), "-q"]
    assert cli.main(args + ["--precision", "float32", "--strength", "0.5"]) == 0
    blend = 0.5 * expected + 0.5 * images.load_image(photo_file)
    np.testing.assert_allclose(images.load_image(half), np.round(blend), atol=1.0)


def test_python_overwrite_input(tmp_path, photo_file, painting_file, vgg16_weights_file):
    """From Python, `output=` an input file is refused unless `overwrite_input=True`."""
    import keras_style
    from keras_style.core.transformer_net import build_transformer_net

    keras.utils.set_random_seed(2)
    net = build_transformer_net(width=0.25)
    before = photo_file.read_bytes()
    with pytest.raises(ValueError, match="overwrite the input"):
        keras_style.stylize(photo_file, model=net, output=photo_file)
    assert photo_file.read_bytes() == before
    slow = dict(size=32, iterations=1, backbone="vgg16", vgg_weights=vgg16_weights_file, verbose=0)
    painting_before = painting_file.read_bytes()
    with pytest.raises(ValueError, match="overwrite the input"):
        keras_style.stylize(photo_file, painting_file, output=painting_file, **slow)
    assert painting_file.read_bytes() == painting_before
    result = keras_style.stylize(photo_file, model=net, output=photo_file, overwrite_input=True)
    assert photo_file.read_bytes() != before
    np.testing.assert_allclose(images.load_image(photo_file), np.round(result), atol=1.0)
    keras_style.stylize(
        photo_file, painting_file, output=painting_file, overwrite_input=True, **slow
    )
    assert painting_file.read_bytes() != painting_before


def test_optimize_config_defaults_are_the_cli_and_api_defaults():
    """`keras-style stylize` flags and `stylize()` keywords default to `OptimizeConfig`'s fields."""
    import dataclasses
    import inspect

    from keras_style import api
    from keras_style.slow import optimize
    from keras_style.slow.options import DEFAULT_ITERATIONS, OptimizeConfig

    assert optimize.OptimizeConfig is OptimizeConfig  # one option group, two import paths
    assert OptimizeConfig().iterations == DEFAULT_ITERATIONS[OptimizeConfig().optimizer]
    args = cli.build_parser().parse_args(["stylize", "photo.jpg", "painting.jpg", "-o", "o.png"])
    from_cli = {
        "size": args.size,
        "optimizer": args.optimizer,
        "learning_rate": args.learning_rate,
        "init": args.init,
        "seed": args.seed,
        "style_scale": args.style_scale,
        "multiscale": not args.no_multiscale,
        "tile_size": args.tile_size,
        "preserve_color": args.preserve_color,
    }
    signature = inspect.signature(api.stylize).parameters
    for field in dataclasses.fields(OptimizeConfig):
        if field.name == "iterations":  # None in both: DEFAULT_ITERATIONS
            assert args.iterations is None and signature["iterations"].default is None
            continue
        assert from_cli[field.name] == field.default, field.name
        assert signature[field.name].default == field.default, field.name
        assert signature[field.name].kind is inspect.Parameter.KEYWORD_ONLY
    # The slow path still forwards every field it took before, by its keyword.
    assert set(api._slow_options()) >= {f.name for f in dataclasses.fields(OptimizeConfig)}
