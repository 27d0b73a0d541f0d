"""--strategy on several devices of this machine's CPU: tf.distribute and keras.distribution.

Devices must be set up before TensorFlow or JAX initialise, so each test runs
the training binary (or a short script) in a fresh process: the CPU split into
2 devices (--cpu_devices / KERAS_STYLE_CPU_DEVICES), a tiny generated image
folder, configs/tiny.json (random-weights VGG16, 32 px crops, batch 2) for 3
steps.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_train_command
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 300


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("strategy_data")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "style.png")
    return {"photos": photos, "style": root / "style.png"}


def _env(backend="tensorflow", **extra):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": backend, **extra}
    for name in ("TF_CONFIG", "XLA_FLAGS", "KERAS_STYLE_CPU_DEVICES"):
        if name not in extra:
            env.pop(name, None)
    return env


def _train_command(workdir, files, *flags):
    return tiny_train_command(workdir, files, "--steps=3", *flags)


def _run(command, env):
    result = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def _assert_trained(workdir, stdout, replicas=2):
    assert f"Trained to step 3 (resumed at 0) on {replicas} replicas" in stdout
    assert (workdir / "model.keras").is_file()
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["ckpt-3"]
    samples = list((workdir / "samples").iterdir())
    assert len(samples) == 1, "one sample grid, the batch not duplicated per replica"
    grid = np.asarray(Image.open(samples[0]))
    assert grid.shape == (2 * 32, 2 * 32, 3), "2 samples, photo | stylized"


def test_split_cpu_devices_and_single_device_fallback():
    script = """
import os
from keras_style.train import distribution
os.environ[distribution.CPU_DEVICES_ENV] = "two"
try:
    distribution.split_cpu_devices()
except ValueError as e:
    print("bad env:", e)
assert distribution.split_cpu_devices(1) == 0
with distribution.distribution_scope("mirrored"):
    print("replicas:", distribution.num_replicas())
try:
    distribution.split_cpu_devices(2)
except RuntimeError as e:
    print("too late:", e)
"""
    result = _run([sys.executable, "-c", script], _env())
    assert "bad env: KERAS_STYLE_CPU_DEVICES must be an integer" in result.stdout
    assert "replicas: 1" in result.stdout, "no split: MirroredStrategy on the one CPU"
    assert "too late: Cannot split the CPU into 2 devices" in result.stdout


def test_tf_mirrored_on_two_cpu_devices(tmp_path, files):
    workdir = tmp_path / "mirrored"
    command = _train_command(workdir, files, "--strategy=mirrored", "--cpu_devices=2")
    result = _run(command, _env())
    assert "Strategy mirrored: MirroredStrategy, 2 replicas" in result.stderr
    assert "device:CPU:1" in result.stderr
    _assert_trained(workdir, result.stdout)
    assert json.loads((workdir / "config.json").read_text())["strategy"] == "mirrored"


def test_jax_batch_must_divide_among_devices(tmp_path, files):
    command = _train_command(tmp_path / "odd", files, "--strategy=mirrored", "--batch_size=3")
    env = _env("jax", KERAS_STYLE_CPU_DEVICES="2")
    result = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 2
    assert "error: batch_size 3 must be divisible by the number of devices (2" in result.stderr


@pytest.mark.slow
def test_jax_data_parallel_on_two_cpu_devices(tmp_path, files):
    workdir = tmp_path / "data_parallel"
    env = _env("jax", KERAS_STYLE_CPU_DEVICES="2")
    # The decaying learning rate (a Keras schedule on the optimizer's step) works under JAX too.
    command = _train_command(workdir, files, "--strategy=mirrored", "--lr_schedule=cosine")
    result = _run(command, env)
    assert "keras.distribution.DataParallel, 2 replicas ['cpu:0', 'cpu:1']" in result.stderr
    _assert_trained(workdir, result.stdout)
    assert json.loads((workdir / "config.json").read_text())["lr_schedule"] == "cosine"


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_tf_multi_worker_two_local_processes(tmp_path, files):
    workdir = tmp_path / "multi_worker"
    cluster = {"worker": [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]}
    command = _train_command(workdir, files, "--strategy=multi_worker")
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(
            subprocess.Popen(
                command,
                cwd=REPO,
                env=_env(TF_CONFIG=tf_config),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stdout[-2000:] + stderr[-4000:]
        assert "Strategy multi_worker: CollectiveAllReduceStrategy, 2 replicas" in stderr
        assert "Trained to step 3 (resumed at 0) on 2 replicas" in stdout
    _assert_trained(workdir, outputs[0][0])
    # Only the chief (worker 0) writes: one TensorBoard event file, no stray temporaries.
    events = list((workdir / "logs").glob("events.out.tfevents.*"))
    assert len(events) == 1, events
    assert not list((workdir / "checkpoints").glob(".tmp-*"))


@pytest.mark.parametrize(
    "tf_config, chief",
    [
        (None, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
        (
            {"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker"}},
            False,
        ),
        ({"cluster": {"chief": ["c:0"]}, "task": {"type": "chief", "index": 0}}, True),
    ],
)
def test_is_chief_outside_the_strategy_scope_reads_tf_config(monkeypatch, tf_config, chief):
    """Work done before `train()` (e.g. distill's dataset record) is written by the chief only."""
    from keras_style.train import distribution

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert distribution._tf_config_chief() is chief
