"""Shared fixtures: generated images, a random-weights VGG16 file (no downloads), a recipe."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: slower end-to-end tests (still run in CI)")


def make_photo(height=40, width=48, seed=0):
    """A smooth, photo-like float32 RGB image in [0, 255] (gradients plus a disc)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 255 * x / max(width - 1, 1)
    g = 255 * y / max(height - 1, 1)
    b = np.where(
        (x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(height, width) / 3) ** 2, 220, 40
    )
    image = np.stack([r, g, b.astype(np.float32)], axis=-1)
    return np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.float32)


def make_painting(height=48, width=48, seed=1):
    """A high-frequency, stroke-like float32 RGB texture in [0, 255]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    waves = np.stack([np.sin(x / 2.0 + y / 3.0), np.sin(y / 1.5), np.cos((x + y) / 2.5)], axis=-1)
    return np.clip(127.5 + 110 * waves + rng.normal(0, 10, waves.shape), 0, 255).astype(np.float32)


@pytest.fixture
def photo():
    return make_photo()


@pytest.fixture
def painting():
    return make_painting()


@pytest.fixture
def photo_file(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(make_photo().astype(np.uint8)).save(path)
    return path


@pytest.fixture
def painting_file(tmp_path):
    path = tmp_path / "painting.jpg"
    Image.fromarray(make_painting().astype(np.uint8)).save(path, quality=95)
    return path


@pytest.fixture(scope="session")
def vgg16_weights_file(tmp_path_factory):
    """A VGG16 (include_top=False) weights file with seeded random weights."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    path = tmp_path_factory.mktemp("weights") / "vgg16_random.weights.h5"
    model.save_weights(path)
    return path


@pytest.fixture(scope="session")
def make_slow_recipe(vgg16_weights_file):
    """Factory of the distillation tests' `SlowRecipe`: 2 L-BFGS steps on the random VGG16.

    `make_slow_recipe(folder, image_size)` saves a `make_painting` style image
    as `folder/style.png` and returns the recipe built on it.
    """
    from keras_style.distill.recipe import SlowRecipe

    def make(folder, image_size):
        style = folder / "style.png"
        Image.fromarray(make_painting().astype(np.uint8)).save(style)
        return SlowRecipe(
            style_files=[str(style)],
            image_size=image_size,
            backbone="vgg16",
            vgg_weights=str(vgg16_weights_file),
            optimize={"iterations": 2, "multiscale": False},
            batch_size=2,
        )

    return make


TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.json"


def tiny_train_command(workdir, files, *flags):
    """`python -m training.train` on the tiny preset, a photo folder and a style file."""
    return [
        sys.executable,
        "-m",
        "training.train",
        f"--config={TINY_CONFIG}",
        f"--workdir={workdir}",
        f"--style_image={files['style']}",
        f"--image_dir={files['photos']}",
        *flags,
    ]
