"""keras-style: neural style transfer for Keras 3 and TensorFlow."""

import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "([^"]+)"', Path("keras_style/__init__.py").read_text()).group(
    1
)

# Apache Beam for the TFDS builder's Beam path. The floor keeps pip from backtracking
# to old Beam releases that cap numpy<2.3 (2.70 does) or protobuf<6 (2.65 does; TF 2.21
# needs protobuf>=6.31.1): 2.74 is the oldest checked release that takes numpy 2.4 next
# to TF 2.21. The releases checked (2.65-2.77) cap protobuf<7, and 2.77 caps pillow<13
# and pyarrow<26, so installing Beam resolves those to protobuf 6.33, pillow 12.3 and
# pyarrow 25 (all inside TF 2.21's and TFDS's ranges).
BEAM = ["apache-beam>=2.74,<3"]

# training/plot_curve.py (keras_style.quality.curves). TensorFlow 2.21 does not
# install TensorBoard. tensorboard 2.21 takes protobuf>=6.31.1,<8, so pip keeps
# the protobuf 6.33 that TF 2.21 (>=6.31.1) and Beam (<7) resolve to (checked with
# `pip install --dry-run`: no protobuf change).
PLOTS = [
    # Draws the training-curve PNG (Agg backend: no display needed).
    "matplotlib",
    # TensorBoard's own event-file reader for the scalars the trainer writes.
    "tensorboard",
]

setup(
    name="keras-style",
    version=VERSION,
    description="Neural style transfer (Gatys and Johnson et al.) for Keras 3, "
    "with training binaries and TFLite export.",
    long_description=Path("README.md").read_text() if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # Only the library is installed. The absl binaries in training/ and export/ run from a
    # checkout (`python -m training.train`, beside configs/); installed as top-level
    # packages they would shadow any other `training` or `export` module in site-packages.
    packages=find_packages(include=["keras_style", "keras_style.*"]),
    package_data={
        "keras_style": ["assets/*", "assets/**/*", "serve/static/*", "serve/static/**/*"]
    },
    include_package_data=True,
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.3",
        "numpy",
        "pillow",
        "tensorflow-datasets",
        "absl-py",
        # Runs the exported .tflite files (the successor of tf.lite.Interpreter).
        "ai-edge-litert",
    ],
    extras_require={
        "test": [
            "pytest",
            "pytest-timeout",
            "ruff",
            # lint-imports: CI checks the layers and no-cycle rules in .importlinter.
            "import-linter",
            "jax[cpu]",
            "imageio",
            "imageio-ffmpeg",
            "scipy",
            # The serve extra, plus httpx (Starlette's test client) and Selenium,
            # which drives the system's headless Chromium in the browser tests.
            "starlette",
            "uvicorn",
            "python-multipart",
            "httpx",
            "selenium",
            # The beam extra: CI builds the TFDS dataset on Beam's DirectRunner
            # (tests/distill/test_dataset.py::test_tfds_builder_on_beam fails
            # rather than skips in CI when Beam is missing).
            *BEAM,
            # The plots extra: tests/quality/test_curves.py draws and reads curves.
            *PLOTS,
        ],
        # `keras-style serve`: Starlette is a small, maintained ASGI framework whose
        # routing, static files (path-safe) and multipart parsing (python-multipart)
        # are all the app needs, without FastAPI's schema layer; uvicorn serves it.
        "serve": ["starlette", "uvicorn", "python-multipart"],
        # Video decoding/encoding with a bundled ffmpeg binary; SciPy's image
        # filters (box blur, dilation) for the flicker smoother's motion mask.
        "video": ["imageio", "imageio-ffmpeg", "scipy"],
        # Building the stylized dataset through TFDS on Apache Beam.
        "beam": BEAM,
        # `python -m training.plot_curve`: training curves as PNG/CSV for the docs.
        "plots": PLOTS,
    },
    entry_points={"console_scripts": ["keras-style=keras_style.cli:main"]},
)
