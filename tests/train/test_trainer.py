"""Tests for train.trainer and training.train: loss falls, metrics, checkpoints, resume."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_train_command
from PIL import Image

from keras_style.core import jsonio
from keras_style.quality import curves
from keras_style.train import summaries, trainer
from keras_style.train.checkpoints import CheckpointManager
from keras_style.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny.json"


def _photo(height, width, seed):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([(x * 4 + seed * 30) % 256, (y * 5) % 256, ((x + y) * 3) % 256], axis=-1)
    return image.astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    photos = root / "photos"
    photos.mkdir()
    for i in range(4):
        Image.fromarray(_photo(40, 48, i)).save(photos / f"p{i}.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    y, x = np.mgrid[0:64, 0:64]
    waves = np.sin(x / 2.0)[..., None] * np.array([100, 50, -80]) + 127
    Image.fromarray(np.clip(waves, 0, 255).astype(np.uint8)).save(root / "style.png")
    return {"photos": photos, "style": root / "style.png"}


def _config(tmp_path, files, **overrides):
    return TrainConfig.from_json(
        TINY,
        workdir=str(tmp_path / "work"),
        style_image=str(files["style"]),
        image_dir=str(files["photos"]),
        **overrides,
    )


def test_tiny_config_loss_falls_and_parts_are_metrics(tmp_path, files):
    config = _config(tmp_path, files)
    keras.utils.set_random_seed(0)
    model = trainer.build_trainer(config)
    batch = np.stack([_photo(32, 32, i) for i in range(2)]).astype(np.float32)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    history = model.fit(dataset, epochs=4, steps_per_epoch=3, verbose=0).history
    assert {"loss", "content_loss", "style_loss", "tv_loss"} <= set(history)
    assert history["loss"][-1] < 0.8 * history["loss"][0], history["loss"]
    weights = config.loss_config()
    recombined = (
        weights.content_weight * history["content_loss"][-1]
        + weights.style_weight * history["style_loss"][-1]
        + weights.tv_weight * history["tv_loss"][-1]
    )
    assert recombined == pytest.approx(history["loss"][-1], rel=1e-3)


def test_tone_term_is_a_metric_and_its_loss_falls(tmp_path, files):
    config = _config(tmp_path, files, tone_weight=5.0, tone_scale=8)
    keras.utils.set_random_seed(0)
    model = trainer.build_trainer(config)
    batch = 255.0 - np.stack([_photo(32, 32, i) for i in range(2)]).astype(np.float32)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    history = model.fit(dataset, epochs=4, steps_per_epoch=3, verbose=0).history
    assert history["tone_loss"][-1] < history["tone_loss"][0], history["tone_loss"]
    weights = config.loss_config()
    assert (weights.tone_weight, weights.tone_scale) == (5.0, 8)
    recombined = sum(
        getattr(weights, f"{part}_weight") * history[f"{part}_loss"][-1]
        for part in ("content", "style", "tv", "tone")
    )
    assert recombined == pytest.approx(history["loss"][-1], rel=1e-3)


def test_bfloat16_network_trains_with_float32_weights(tmp_path, files):
    """net_precision="bfloat16": bf16 compute, float32 master weights, loss falls."""
    config = _config(tmp_path, files, net_precision="bfloat16")
    keras.utils.set_random_seed(0)
    model = trainer.build_trainer(config)
    conv = model.net.get_layer("res1_a_conv")
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"
    assert all(v.dtype == "float32" for v in model.net.weights + model.optimizer.variables[1:])
    batch = np.stack([_photo(32, 32, i) for i in range(2)]).astype(np.float32)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    history = model.fit(dataset, epochs=4, steps_per_epoch=3, verbose=0).history
    assert history["loss"][-1] < 0.8 * history["loss"][0], history["loss"]
    stylized = model.net(batch, training=False)
    assert stylized.dtype == "float32" and stylized.shape == batch.shape


def test_same_seed_same_initial_network_in_every_precision(tmp_path, files):
    """A float32 and a bfloat16 run of one seed start from the same weights (paired curves)."""
    weights = {}
    for precision in ("float32", "bfloat16"):
        config = _config(tmp_path, files, net_precision=precision, loss_precision=precision)
        keras.utils.set_random_seed(7)
        weights[precision] = [np.asarray(w) for w in trainer.build_trainer(config).net.weights]
    assert len(weights["float32"]) == len(weights["bfloat16"])
    for a, b in zip(weights["float32"], weights["bfloat16"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_bfloat16_checkpoints_hold_float32_weights_and_resume(tmp_path, files):
    import h5py

    config = _config(tmp_path, files, net_precision="bfloat16", steps=4, sample_every=0)
    trainer.train(config, verbose=0)
    work = Path(config.workdir)
    checkpoint = work / "checkpoints" / "ckpt-4"
    with h5py.File(checkpoint / "net.weights.h5") as saved:
        dtypes = set()
        saved.visititems(lambda _, obj: dtypes.add(obj.dtype) if hasattr(obj, "dtype") else None)
    assert dtypes == {np.dtype("float32")}
    optimizer_state = np.load(checkpoint / "optimizer.npz")
    assert {optimizer_state[k].dtype for k in optimizer_state.files[1:]} == {np.dtype("float32")}
    # model.keras is an ordinary float32 network holding those weights.
    loaded = keras.saving.load_model(work / "model.keras")
    assert loaded.get_layer("res1_a_conv").compute_dtype == "float32"
    restored = trainer.build_trainer(config)
    assert (
        CheckpointManager(work / "checkpoints").restore(
            checkpoint, restored.net, restored.optimizer
        )
        == 4
    )
    for got, want in zip(restored.net.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    for variable in restored.optimizer.variables[1:]:
        assert variable.dtype == "float32"
    resumed = trainer.train(config.replace(steps=6), verbose=0)
    assert resumed["initial_step"] == 4 and resumed["step"] == 6


def test_net_precision_validation():
    assert TrainConfig(style_image="x.jpg", mixed_precision=True).dtype_policy() == "mixed_float16"
    assert TrainConfig(style_image="x.jpg", net_precision="bfloat16").dtype_policy() == (
        "mixed_bfloat16"
    )
    with pytest.raises(ValueError, match="net_precision"):
        TrainConfig(style_image="x.jpg", net_precision="int8")
    with pytest.raises(ValueError, match="conflicts"):
        TrainConfig(style_image="x.jpg", net_precision="bfloat16", mixed_precision=True)


@pytest.mark.parametrize("fast_bf16, policy", [(True, "mixed_bfloat16"), (False, "float32")])
def test_auto_net_precision_follows_the_hardware(monkeypatch, fast_bf16, policy):
    from keras_style.core import vgg

    monkeypatch.setattr(vgg, "_cpu_has_bf16", lambda: fast_bf16)
    monkeypatch.setattr(vgg, "_on_accelerator", lambda: False)
    config = TrainConfig(style_image="x.jpg")
    assert config.net_precision == "auto" and config.dtype_policy() == policy
    assert TrainConfig(style_image="x.jpg", net_precision="float32").dtype_policy() == "float32"


@pytest.mark.slow
def test_mixed_precision_flag_trains_in_float16_with_float32_state(tmp_path, files):
    """README: `--mixed_precision` is `--net_precision=float16`: float16 compute, float32 state."""
    workdir = tmp_path / "mixed"
    command = tiny_train_command(
        workdir, files, "--steps=2", "--checkpoint_every=2", "--sample_every=0"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [*command, "--mixed_precision"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = TrainConfig.from_json(workdir / "config.json")
    assert config.mixed_precision and config.dtype_policy() == "mixed_float16"
    checkpoint = workdir / "checkpoints" / "ckpt-2"
    names = json.loads((checkpoint / "state.json").read_text())["optimizer_variables"]
    assert any("scale" in name for name in names), names  # float16's loss scaling
    saved = np.load(checkpoint / "optimizer.npz")
    assert {saved[k].dtype for k in saved.files if saved[k].dtype.kind == "f"} == {
        np.dtype("float32")
    }
    built = trainer.build_trainer(config)
    conv = built.net.get_layer("res1_a_conv")
    assert conv.compute_dtype == "float16" and conv.kernel.dtype == "float32"
    loaded = keras.saving.load_model(workdir / "model.keras")
    assert loaded.get_layer("res1_a_conv").compute_dtype == "float32"
    assert all(w.dtype == np.float32 for w in loaded.get_weights())
    plain = trainer.build_trainer(_config(tmp_path, files, net_precision="float32"))
    assert plain.net.get_layer("res1_a_conv").compute_dtype == "float32"
    assert not any("scale" in v.path for v in plain.optimizer.variables)


def test_distill_loss_trains_on_pairs(tmp_path, files):
    config = _config(tmp_path, files, loss="distill", style_weight=0.0)
    model = trainer.build_trainer(config)
    content = np.stack([_photo(32, 32, i) for i in range(2)]).astype(np.float32)
    target = 255.0 - content
    dataset = tf.data.Dataset.from_tensors((content, target)).repeat()
    history = model.fit(dataset, epochs=3, steps_per_epoch=3, verbose=0).history
    assert {"loss", "pixel_loss", "content_loss", "style_loss", "tv_loss"} <= set(history)
    assert history["pixel_loss"][-1] < history["pixel_loss"][0]


def test_distill_loss_parts_and_weights(tmp_path, files):
    """Every part is a distance to the target (zero when equal); the total weighs them."""
    config = _config(tmp_path, files, loss="distill", pixel_weight=2.0, style_weight=3.0)
    model = trainer.build_trainer(config)
    target = np.stack([_photo(32, 32, i) for i in range(2)]).astype(np.float32)
    _, same = model._distill(target, target)
    for name in ("pixel_loss", "content_loss", "style_loss"):
        assert float(same[name]) == pytest.approx(0.0, abs=1e-6), name
    total, parts = model._distill(target, 255.0 - target)
    parts = {k: float(v) for k, v in parts.items()}
    assert min(parts.values()) > 0.0
    weights = config.loss_config()
    expected = (
        2.0 * parts["pixel_loss"]
        + weights.content_weight * parts["content_loss"]
        + 3.0 * parts["style_loss"]
        + weights.tv_weight * parts["tv_loss"]
    )
    assert float(total) == pytest.approx(expected, rel=1e-5)


def test_hybrid_adds_the_painting_style_term(tmp_path, files):
    """painting_style_weight adds the perceptual style term (Grams of the painting) to distill."""
    plain = trainer.build_trainer(_config(tmp_path, files, loss="distill", style_weight=0.0))
    config = _config(tmp_path, files, loss="distill", style_weight=0.0, painting_style_weight=4.0)
    hybrid = trainer.build_trainer(config)
    hybrid.net.set_weights(plain.net.get_weights())
    target = np.stack([_photo(32, 32, i) for i in range(2)]).astype(np.float32)
    base_total, base = plain._distill(target, target)
    total, parts = hybrid._distill(target, target)
    assert "painting_style_loss" not in base and float(parts["painting_style_loss"]) > 0.0
    expected = float(base_total) + 4.0 * float(parts["painting_style_loss"])
    assert float(total) == pytest.approx(expected, rel=1e-5)
    dataset = tf.data.Dataset.from_tensors((target, 255.0 - target)).repeat()
    history = hybrid.fit(dataset, epochs=3, steps_per_epoch=3, verbose=0).history
    assert history["painting_style_loss"][-1] < history["painting_style_loss"][0]


def test_painting_style_weight_is_checked(tmp_path, files):
    with pytest.raises(ValueError, match="painting_style_weight must be >= 0"):
        _config(tmp_path, files, loss="distill", painting_style_weight=-1.0)
    with pytest.raises(ValueError, match="term of the distill loss"):
        _config(tmp_path, files, painting_style_weight=1.0)
    config = _config(tmp_path, files, loss="distill", painting_style_weight=1.0)
    config = config.replace(style_image=None)
    with pytest.raises(ValueError, match="needs a style_image"):
        trainer.build_trainer(config)


def test_ssim_term_of_the_distill_loss(tmp_path, files):
    """ssim_weight adds 1 - SSIM to the target; training raises the SSIM."""
    config = _config(tmp_path, files, loss="distill", style_weight=0.0, ssim_weight=3.0)
    model = trainer.build_trainer(config)
    target = np.stack([_photo(32, 32, i) for i in range(2)]).astype(np.float32)
    _, same = model._distill(target, target)
    assert float(same["ssim_loss"]) == pytest.approx(0.0, abs=1e-5)
    other = 255.0 - target
    total, parts = model._distill(target, other)
    model.ssim_weight = 0.0  # the same loss network (random VGG weights differ between builds)
    base_total, base = model._distill(target, other)
    model.ssim_weight = 3.0
    assert "ssim_loss" not in base and float(parts["ssim_loss"]) > 0.0
    expected = float(base_total) + 3.0 * float(parts["ssim_loss"])
    assert float(total) == pytest.approx(expected, rel=1e-5)
    dataset = tf.data.Dataset.from_tensors((target, other)).repeat()
    history = model.fit(dataset, epochs=3, steps_per_epoch=3, verbose=0).history
    assert history["ssim_loss"][-1] < history["ssim_loss"][0]
    with pytest.raises(ValueError, match="ssim_weight must be >= 0"):
        config.replace(ssim_weight=-1.0)
    with pytest.raises(ValueError, match="ssim_weight is a term of the distill loss"):
        _config(tmp_path, files, ssim_weight=1.0)


def test_train_writes_the_work_dir(tmp_path, files):
    config = _config(tmp_path, files, steps=4)
    result = trainer.train(config, verbose=0)
    work = Path(config.workdir)
    assert result["step"] == 4 and result["initial_step"] == 0
    assert result["skipped"] == 1
    assert json.loads((work / "config.json").read_text()) == config.to_dict()
    assert json.loads((work / "data.json").read_text())["num_skipped"] == 1
    assert (work / "checkpoints" / "ckpt-4" / "state.json").is_file()
    assert any((work / "logs").iterdir())
    assert sorted(p.name for p in (work / "samples").iterdir()) == ["step_00000004.png"]
    previews = np.load(work / "samples.npy")
    assert previews.shape == (2, 32, 32, 3) and previews.dtype == np.float32
    net = keras.saving.load_model(work / "model.keras")
    assert net(np.zeros((1, 9, 11, 3), np.float32)).shape == (1, 9, 11, 3)
    # Rerunning a finished job trains nothing more.
    again = trainer.train(config, verbose=0)
    assert again["initial_step"] == 4 and again["history"] == {}
    # Each run that trained is recorded; a longer rerun adds its own record.
    trainer.train(config.replace(steps=6), verbose=0, command="python -m training.train --steps=6")
    runs = json.loads((work / "runs.json").read_text())
    assert [(r["from_step"], r["to_step"]) for r in runs] == [(0, 4), (4, 6)]
    assert runs[1]["command"] == "python -m training.train --steps=6" and runs[1]["wall_s"] > 0
    # The resumed run's stream starts at step 4; its previews stay the job's first photos.
    np.testing.assert_array_equal(np.load(work / "samples.npy"), previews)


def test_cosine_learning_rate_decays_over_the_job_and_resumes_on_its_curve(tmp_path, files):
    config = _config(tmp_path, files, steps=6, lr_schedule="cosine", lr_final_fraction=0.1)
    model = trainer.build_trainer(config)

    def rate_at(step):
        model.optimizer.iterations.assign(step)
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))

    # 0.01 -> half-way 0.01 * (0.1 + 0.9 / 2) -> the floor 0.001, and it stays there.
    np.testing.assert_allclose([rate_at(s) for s in (0, 3, 6, 9)], [0.01, 0.0055, 1e-3, 1e-3], 1e-5)
    # With epochs set, the job's length comes from the dataset, not config.steps.
    longer = trainer.build_trainer(config, total_steps=12)
    longer.optimizer.iterations.assign(6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(longer.optimizer.learning_rate), 0.0055, 1e-5
    )
    # A checkpoint holds the step counter: a job resumed from step 4 goes on at step 4's rate.
    trainer.train(config.replace(steps=4), verbose=0)
    manager = CheckpointManager(Path(config.workdir) / "checkpoints", keep=3)
    restored = trainer.build_trainer(config)
    assert manager.restore(manager.latest(), restored.net, restored.optimizer) == 4
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored.optimizer.learning_rate),
        0.01 * (0.1 + 0.9 * 0.25),
        1e-5,
    )
    # The rate is logged beside the losses; the constant schedule keeps one rate.
    series = curves.read_scalars(Path(config.workdir) / "logs")
    steps, rates = series["learning_rate"]
    assert list(steps) == [2, 4] and rates[1] < rates[0] < 0.01
    constant = trainer.build_trainer(config.replace(lr_schedule="constant"))
    constant.optimizer.iterations.assign(5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(constant.optimizer.learning_rate), 0.01)
    for bad in ({"lr_schedule": "step"}, {"lr_final_fraction": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            config.replace(**bad)


def test_summary_points_are_step_means_not_running_means(tmp_path):
    """TensorBoard points average the steps since the previous point, across epochs too."""
    from keras_style.quality import curves

    callback = summaries.SummaryCallback(tmp_path, initial_step=10, every=2)
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0, 20.0]
    for epoch, chunk in enumerate((values[:6], values[6:])):
        callback.on_epoch_begin(epoch)
        for batch in range(len(chunk)):
            callback.on_train_batch_end(batch, {"loss": np.mean(chunk[: batch + 1])})
    callback.on_train_end()
    steps, losses = curves.read_scalars(tmp_path)["loss"]
    assert steps.tolist() == [12, 14, 16, 18]
    np.testing.assert_allclose(losses, [1.5, 3.5, 5.5, 15.0])


def test_checkpoints_are_atomic_pruned_and_checked(tmp_path):
    def dense_net():
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])

    keras.utils.set_random_seed(0)
    net = dense_net()
    optimizer = keras.optimizers.Adam()
    optimizer.build(net.trainable_variables)
    manager = CheckpointManager(tmp_path, keep=2)
    rng = np.random.default_rng(0)
    for step in (1, 2, 3):  # real Adam steps: non-zero moments, moved weights
        grads = [rng.normal(size=v.shape).astype("float32") for v in net.trainable_variables]
        optimizer.apply(grads, net.trainable_variables)
        manager.save(net, optimizer, step)
    saved_weights = [np.array(w) for w in net.get_weights()]
    roles = ("iteration", "learning_rate", "kernel_momentum", "kernel_velocity")
    roles += ("bias_momentum", "bias_velocity")

    def role(variable):
        return [name for name in roles if variable.path.endswith(name)]

    saved_slots = [(role(v), np.array(v)) for v in optimizer.variables]
    (tmp_path / ".tmp-ckpt-9-123").mkdir()  # a write interrupted by a crash
    (tmp_path / "ckpt-7").mkdir()  # no state.json: incomplete, ignored
    assert manager.steps() == [2, 3]
    assert manager.latest().name == "ckpt-3"
    # Restore into a new network and a new optimizer, both freshly initialised.
    keras.utils.set_random_seed(1)
    new_net = dense_net()
    fresh = keras.optimizers.Adam()
    fresh.build(new_net.trainable_variables)
    assert not np.allclose(new_net.get_weights()[0], saved_weights[0])
    assert manager.restore(manager.latest(), new_net, fresh) == 3
    assert int(fresh.iterations) == 3
    for got, want in zip(new_net.get_weights(), saved_weights, strict=True):
        np.testing.assert_array_equal(got, want)
    moments = [v for v in fresh.variables if "momentum" in v.path or "velocity" in v.path]
    assert len(moments) == 4 and all(np.abs(np.array(v)).min() > 0 for v in moments)
    assert len(fresh.variables) == len(saved_slots)
    for variable, (slot, value) in zip(fresh.variables, saved_slots, strict=True):
        assert role(variable) == slot and len(slot) == 1
        np.testing.assert_array_equal(np.array(variable), value)
    # The older checkpoint holds the older state.
    older = dense_net()
    older_optimizer = keras.optimizers.Adam()
    older_optimizer.build(older.trainable_variables)
    assert manager.restore(tmp_path / "ckpt-2", older, older_optimizer) == 2
    assert not np.array_equal(older.get_weights()[0], saved_weights[0])
    other = keras.optimizers.SGD(momentum=0.9)
    other.build(new_net.trainable_variables)
    with pytest.raises(ValueError, match="optimizer"):
        manager.restore(manager.latest(), new_net, other)


def test_photo_size_reaches_the_pipeline_and_is_checked(tmp_path, files, monkeypatch):
    config = _config(tmp_path, files, photo_size=64, steps=1)
    seen = {}
    real = trainer.data.content_dataset
    monkeypatch.setattr(trainer.data, "content_dataset", lambda **kw: seen.update(kw) or real(**kw))
    dataset, _ = trainer._dataset(config, start_batch=3)
    assert seen["photo_size"] == 64 and seen["image_size"] == 32 and seen["start_batch"] == 3
    assert next(iter(dataset)).shape == (config.batch_size, 32, 32, 3)
    with pytest.raises(ValueError, match="photo_size must be >= image_size"):
        _config(tmp_path, files, photo_size=16)


def test_config_validation_and_presets(tmp_path):
    with pytest.raises(ValueError, match="Unknown config keys"):
        TrainConfig.from_dict({"style_image": "x.jpg", "stpes": 3})
    with pytest.raises(ValueError, match="width"):
        TrainConfig(style_image="x.jpg", width=0.3)
    with pytest.raises(ValueError, match="head"):
        TrainConfig(style_image="x.jpg", head="sigmoid")
    with pytest.raises(ValueError, match="style_image"):
        TrainConfig()
    with pytest.raises(ValueError, match="not found"):
        TrainConfig.from_json(tmp_path / "nope.json")
    for preset in (TINY, REPO / "configs" / "starry_night.json"):
        values = jsonio.read_preset(preset)
        TrainConfig.from_dict({"style_image": "x.jpg", **values})


def test_bundled_style_presets_name_their_painting():
    """configs/bundled_<style>.json: one preset per shipped style, each naming its painting."""
    presets = sorted((REPO / "configs").glob("bundled_*.json"))
    assert len(presets) == 4
    for preset in presets:
        config = TrainConfig.from_dict(jsonio.read_preset(preset))
        style = preset.stem.removeprefix("bundled_")
        assert Path(config.style_image).name == f"{style}.jpg"
        assert config.backbone == "vgg16" and config.head == "clip" and config.steps >= 1000


def test_refinement_presets_continue_their_bundled_style():
    """configs/refine_<style>.json and tone_<style>.json load and name the style's painting."""
    presets = sorted((REPO / "configs").glob("refine_*.json")) + sorted(
        (REPO / "configs").glob("tone_*.json")
    )
    assert len(presets) >= 4
    for preset in presets:
        config = TrainConfig.from_dict(jsonio.read_preset(preset))
        style = preset.stem.split("_", 1)[1]
        assert Path(config.style_image).name == f"{style}.jpg"
        assert config.width == 0.5 and config.head == "clip"  # the bundled networks' shape
        if preset.stem.startswith("tone_"):
            assert config.loss_config().tone_weight > 0


def _train_command(workdir, files, steps):
    return tiny_train_command(
        workdir, files, f"--steps={steps}", "--checkpoint_every=3", "--sample_every=0"
    )


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_resume_after_kill_9_ends_at_the_same_step(tmp_path, files, precision):
    workdir = tmp_path / "killed"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [*_train_command(workdir, files, steps=9), f"--net_precision={precision}"]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    first = workdir / "checkpoints" / "ckpt-3" / "state.json"
    deadline = time.time() + 240
    while not first.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    manager = CheckpointManager(workdir / "checkpoints")
    killed_at = manager.steps()[-1]
    assert 3 <= killed_at < 9, "killed after the first checkpoint, before the end"
    _assert_resume_restores_the_checkpoint(tmp_path, workdir, killed_at)

    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed at {killed_at}" in result.stdout
    assert manager.steps()[-1] == 9
    optimizer_state = np.load(manager.latest() / "optimizer.npz")
    assert int(optimizer_state["v0000"]) == 9, "the optimizer's step count was restored too"
    assert (workdir / "model.keras").is_file()


@pytest.mark.slow
def test_ctrl_c_stops_with_one_line_and_the_run_resumes(tmp_path, files):
    workdir = tmp_path / "interrupted"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # Far more steps than the run can take before Ctrl-C lands: tiny steps take milliseconds,
    # and a 9-step run once finished between the first checkpoint and the signal.
    command = _train_command(workdir, files, steps=100_000)
    # Started with SIGINT ignored, as a background job of a script or CI runner is: the
    # binary still stops on it (`kill -INT`), as it does on Ctrl-C in a terminal.
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    first = workdir / "checkpoints" / "ckpt-3" / "state.json"
    deadline = time.time() + 240
    while not first.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "rerun the same command to resume" in stderr.strip().splitlines()[-1]
    stopped_at = CheckpointManager(workdir / "checkpoints").steps()[-1]
    runs = json.loads((workdir / "runs.json").read_text())
    assert [(r["from_step"], r["to_step"], r["interrupted"]) for r in runs] == [
        (0, stopped_at, True)
    ]
    end = stopped_at + 3
    command = _train_command(workdir, files, steps=end)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed at {stopped_at}" in result.stdout
    runs = json.loads((workdir / "runs.json").read_text())
    assert [(r["from_step"], r["to_step"]) for r in runs] == [(0, stopped_at), (stopped_at, end)]


class _StateAtStart(keras.callbacks.Callback):
    """The network's weights and the optimizer's variables when `fit` starts (after resume)."""

    def on_train_begin(self, logs=None):
        self.weights = [np.array(w) for w in self.model.net.get_weights()]
        self.slots = [(v.path, np.array(v)) for v in self.model.optimizer.variables]


def _assert_resume_restores_the_checkpoint(tmp_path, workdir, step):
    """Resuming a copy of the killed work dir starts from exactly checkpoint `step`."""
    import re
    import shutil

    copy = tmp_path / "resume_copy"
    shutil.copytree(workdir, copy)
    config = TrainConfig.from_json(copy / "config.json", workdir=str(copy))
    checkpoint = copy / "checkpoints" / f"ckpt-{step}"
    saved = np.load(checkpoint / "optimizer.npz")
    names = json.loads((checkpoint / "state.json").read_text())["optimizer_variables"]
    # The saved network, read by Keras itself into a new network (not by the code under test).
    reference = trainer.build_trainer(config).net
    reference.load_weights(checkpoint / "net.weights.h5")
    state = _StateAtStart()
    result = trainer.train(config.replace(steps=step + 1), callbacks=[state], verbose=0)
    assert result["initial_step"] == step
    assert len(state.weights) == len(reference.get_weights())
    for got, want in zip(state.weights, reference.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)

    # Same variables in the same order (names up to Keras' "_1" uniquifying suffixes).
    def plain(name):
        return re.sub(r"_\d+(?=/|$)", "", name)

    assert [plain(name) for name, _ in state.slots] == [plain(name) for name in names]
    for i, (name, value) in enumerate(state.slots):
        np.testing.assert_array_equal(value, saved[f"v{i:04d}"], err_msg=name)
    moments = [i for i, name in enumerate(names) if name.endswith(("_momentum", "_velocity"))]
    assert len(moments) == 2 * len(reference.trainable_variables)
    assert all(np.abs(saved[f"v{i:04d}"]).max() > 0 for i in moments)  # real Adam state
    assert names[0].endswith("iteration") and int(state.slots[0][1]) == step


class _StepLosses(keras.callbacks.Callback):
    """Per-step losses, recovered from the running means Keras reports after each batch."""

    def __init__(self):
        super().__init__()
        self.means = []

    def on_train_batch_end(self, batch, logs=None):
        self.means.append(logs["loss"])

    def losses(self):
        totals = np.array(self.means) * np.arange(1, len(self.means) + 1)
        return np.diff(totals, prepend=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_resumed_run_continues_the_uninterrupted_one(tmp_path, files, precision):
    """A seeded run stopped at step 8 and resumed takes the uninterrupted run's steps 9-16.

    The checkpoint restores weights and Adam moments, and the photo stream is
    entered at batch 8, so the resumed steps see the same crops in the same
    order: their losses are the uninterrupted run's, up to float rounding (both
    precisions agree to about 1e-5 on this machine; the tolerance allows other
    CPUs' kernels). Before the stream could be entered mid-way, a resumed run
    replayed the first photos and its losses differed by up to 2x.
    """

    def run(workdir, steps):
        record = _StepLosses()
        config = _config(
            tmp_path, files, steps=steps, head="clip", sample_every=0, net_precision=precision
        )
        config = TrainConfig.from_dict({**config.to_dict(), "workdir": str(tmp_path / workdir)})
        trainer.train(config, callbacks=[record], verbose=0)
        return record.losses()

    whole = run("whole", 16)
    stopped = run("split", 8)
    resumed = run("split", 16)
    assert len(resumed) == 8
    np.testing.assert_allclose(stopped, whole[:8], rtol=1e-3)
    np.testing.assert_allclose(resumed, whole[8:], rtol=2e-2)


def test_init_from_starts_from_a_trained_network(tmp_path, files):
    first = _config(tmp_path, files, steps=2, head="clip")
    trained = trainer.train(first, verbose=0)["model_path"]
    saved = keras.saving.load_model(trained)
    refined = first.replace(workdir=str(tmp_path / "refine"), steps=12)
    keras.utils.set_random_seed(1)  # a fresh network would differ from the trained one
    net = trainer.build_trainer(refined.replace(init_from=trained)).net
    for got, want in zip(net.get_weights(), saved.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    fresh = trainer.build_trainer(refined).net.get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(fresh, saved.get_weights(), strict=True))
    # It trains on from there, and only the first run of a work dir uses it.
    result = trainer.train(refined.replace(init_from=trained, steps=2), verbose=0)
    assert result["initial_step"] == 0 and result["step"] == 2
    with pytest.raises(ValueError, match="different network.*same width and head"):
        trainer.build_trainer(refined.replace(init_from=trained, width=0.5))
    # A checkpoint folder of a work dir starts a new job from that step.
    checkpoint = str(Path(first.workdir) / "checkpoints" / "ckpt-2")
    net = trainer.build_trainer(refined.replace(init_from=checkpoint)).net
    for got, want in zip(net.get_weights(), saved.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="checkpoint of a different network"):
        trainer.build_trainer(refined.replace(init_from=checkpoint, width=0.5))
    with pytest.raises(ValueError, match="neither a model file nor a bundled style"):
        trainer.build_trainer(refined.replace(init_from=str(tmp_path / "missing.keras")))


def _is_slow_recipe(values):
    """A slow-method preset (for `make_stylized_dataset`): its loss is a dict of options."""
    return isinstance(values.get("loss"), dict) or "optimize" in values


def test_every_preset_in_configs_loads(tmp_path):
    """Each configs/*.json is a valid training config or slow-method recipe, keys and values."""
    from keras_style.core import images
    from keras_style.distill.recipe import SlowRecipe

    painting = tmp_path / "painting.png"
    images.save_image(np.full((32, 32, 3), 128.0, "float32"), painting)
    presets = sorted((REPO / "configs").glob("*.json"))
    kinds = set()
    for preset in presets:
        values = jsonio.read_preset(preset)
        if _is_slow_recipe(values):
            recipe = SlowRecipe(style_files=[str(painting)], **values)
            assert recipe.image_size >= 16, preset.name
            kinds.add("slow")
        else:
            TrainConfig.from_dict({"style_image": str(painting), **values})
            kinds.add("train")
    assert kinds == {"slow", "train"} and len(presets) >= 20
