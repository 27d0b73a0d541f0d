"""Benchmarks the fast path under the JAX backend (meant for a GPU; runs on CPU at tiny sizes).

Needs only JAX, Keras 3 and this package. Sets KERAS_BACKEND=jax if unset
and blocks `import tensorflow` (an import hook) unless
`--allow_tensorflow` is given, so a CPU run here behaves like the GPU
machine, which has no TensorFlow.

Prints, and writes as JSON with `--json PATH`:

- inference throughput (images per second, median of `--runs` timed calls
  after `--warmup` calls, each ended by `block_until_ready`) for every size,
  batch size and variant:
    fast-float32, fast-bfloat16: `FastStylizer(net, precision=...)`'s
        rewritten network (`keras_style.fast.graph`);
    plain-float32, plain-bfloat16, plain-float16: the plain `TransformerNet`
        (built under the "float32", "mixed_bfloat16", "mixed_float16"
        policies, same weights); fast_graph has no float16, so float16 is
        plain only.
  Each in `jax.jit` of `stateless_call`, in up to three modes (`--modes`):
    device: input already on the device, output left there (the network alone);
    host: `FastStylizer`'s own compiled call (`_run`: numpy in, numpy out,
        host-device copies included; fast variants only);
    api: `FastStylizer.stylize` on a numpy batch (also its numpy
        preparation and clipping; fast variants only).
- quality of every variant against plain-float32 on the same photos
  (PSNR, mean over images, and the largest absolute pixel difference, on
  outputs clipped to [0, 255]);
- optionally (`--train_steps N`) training speed: N steps of the perceptual
  loss through `keras_style.train.model.build_trainer` and `fit` (VGG16, random
  weights unless `--vgg_weights`; speed does not depend on the weights);
- `--budget_s S`: inference measurements not started S seconds after the
  start are skipped (and listed); training still runs. With `--json` the
  file is rewritten after every measurement, so a killed run keeps its figures.
- PASS or FAIL: best device-mode images/s at 1920x1080 (or the largest size
  measured) against `--target_fps`.

    KERAS_BACKEND=jax python bench/bench_fast_jax.py [--sizes 1920x1080,512x512]
        [--batch_sizes 1,8,32] [--runs 10] [--weights model.keras|STYLE]
        [--photos DIR] [--train_steps 50] [--json out.json]

CPU smoke test (seconds):

    KERAS_BACKEND=jax python bench/bench_fast_jax.py --sizes 64x64 --batch_sizes 1,2 \
        --runs 2 --train_steps 2 --train_size 64 --train_batch 2
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
if os.environ["KERAS_BACKEND"] != "jax":
    raise SystemExit(f"KERAS_BACKEND must be jax, got {os.environ['KERAS_BACKEND']}")


class _NoTensorFlow:
    """Import hook: `import tensorflow` raises ModuleNotFoundError, as on the GPU machine.

    (Not `sys.modules["tensorflow"] = None`: Keras treats a "tensorflow" key
    in sys.modules as TensorFlow being loaded.)
    """

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the benchmark)")
        return None


if "--allow_tensorflow" not in sys.argv[1:] and "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, _NoTensorFlow)

import jax  # noqa: E402
import keras  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = REPO / "keras_style" / "assets" / "examples"
DEFAULT_STYLE = DEFAULT_PHOTOS / "starry_night.jpg"
TARGET_SIZE = (1080, 1920)  # (height, width)

FAST_PRECISIONS = ("float32", "bfloat16")
PLAIN_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
MODES = ("device", "host", "api")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1920x1080,512x512", help="WIDTHxHEIGHT list")
    parser.add_argument("--batch_sizes", default="1,8,32", help="comma-separated batch sizes")
    parser.add_argument("--precisions", default="float32,bfloat16,float16")
    parser.add_argument(
        "--variants", default="fast,plain", help="fast (FastStylizer), plain (TransformerNet)"
    )
    parser.add_argument("--modes", default="device,host", help=f"subset of {','.join(MODES)}")
    parser.add_argument("--runs", type=int, default=10, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (compile)")
    parser.add_argument("--target_fps", type=float, default=300.0)
    parser.add_argument("--width", type=float, default=1.0, help="network width (random net)")
    parser.add_argument("--weights", default=None, help=".keras file or bundled style name")
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS), help="folder of input photos")
    parser.add_argument("--quality_images", type=int, default=8, help="photos for the quality")
    parser.add_argument("--train_steps", type=int, default=0, help="timed training steps (0: none)")
    parser.add_argument("--train_size", type=int, default=256)
    parser.add_argument("--train_batch", type=int, default=16)
    parser.add_argument("--train_mixed", action="store_true", help="mixed_float16 network")
    parser.add_argument("--loss_precision", default="auto", help="VGG precision (see vgg.py)")
    parser.add_argument("--vgg_weights", default=None, help="local VGG16 notop weights file")
    parser.add_argument("--style_image", default=str(DEFAULT_STYLE))
    parser.add_argument(
        "--budget_s", type=float, default=0, help="skip inference left after this (0: no limit)"
    )
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--allow_tensorflow", action="store_true")
    args = parser.parse_args(argv)
    args.sizes = [_parse_size(s) for s in args.sizes.split(",") if s]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    args.precisions = [p for p in args.precisions.split(",") if p]
    args.variants = [v for v in args.variants.split(",") if v]
    args.modes = [m for m in args.modes.split(",") if m]
    bad = set(args.modes) - set(MODES) or set(args.variants) - {"fast", "plain"}
    if bad or set(args.precisions) - set(PLAIN_POLICIES):
        parser.error(f"unknown mode, variant or precision: {bad or args.precisions}")
    return args


def _parse_size(text):
    width, height = (int(v) for v in text.lower().split("x"))
    return height, width


def _label(size):
    return f"{size[1]}x{size[0]}"


class Results(dict):
    """The figures; `save()` rewrites the JSON file (after every row: a killed run keeps them)."""

    def __init__(self, path, **values):
        super().__init__(**values)
        self.path = Path(path) if path else None

    def save(self):
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self, indent=1, default=str))
        os.replace(tmp, self.path)


class Clock:
    """Wall time since start, and whether `budget_s` is spent."""

    def __init__(self, budget_s):
        self.start, self.budget_s = time.perf_counter(), budget_s

    def spent(self):
        return self.budget_s > 0 and time.perf_counter() - self.start > self.budget_s


def psnr(a, b):
    """Mean PSNR (dB) over a batch: `keras_style.core.metrics.psnr`, or its formula without TF.

    `metrics.psnr` calls `tf.image.psnr`; where TensorFlow is missing, the
    same per-image definition (MSE over H, W, C; max value 255) in numpy.
    """
    from keras_style.core import metrics

    try:
        return metrics.psnr(a, b), "keras_style.core.metrics.psnr"
    except ImportError:
        a, b = (np.asarray(v, np.float64) for v in (a, b))
        mse = np.mean((a - b) ** 2, axis=(1, 2, 3))
        with np.errstate(divide="ignore"):
            values = 10.0 * np.log10(metrics.MAX_VAL**2 / mse)
        return float(np.mean(values)), "numpy (same formula; tensorflow missing)"


def load_photos(folder, size, count):
    """`count` photos of `size` (centre crop to the aspect, then resize), cycled if fewer."""
    from keras_style.core import images

    files = sorted(
        p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
    )
    if not files:
        raise SystemExit(f"No photos (.jpg, .png) in {folder}")
    height, width = size
    unique = []
    for path in files[:count]:
        image = images.load_image(path)
        h, w = image.shape[:2]
        crop_h, crop_w = min(h, round(w * height / width)), min(w, round(h * width / height))
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        unique.append(images.resize(image[top : top + crop_h, left : left + crop_w], size))
    return np.stack([unique[i % len(unique)] for i in range(count)]), len(unique)


def load_network(args):
    """(network, description): `--weights` resolved, or a random-weights TransformerNet."""
    from keras_style.core.transformer_net import build_transformer_net
    from keras_style.fast import styles

    if args.weights:
        return styles.resolve_model(args.weights), f"trained: {args.weights}"
    keras.utils.set_random_seed(0)
    return build_transformer_net(args.width), "RANDOM weights (no --weights given)"


def plain_network(net, precision):
    """The plain TransformerNet under `precision`'s policy with `net`'s weights, or None."""
    from keras_style.core.transformer_net import TransformerNet

    if precision == "float32":
        return net
    if not isinstance(net, TransformerNet):
        return None  # cannot rebuild an arbitrary model under another policy
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PLAIN_POLICIES[precision])
    try:
        copy = TransformerNet(width=net.width)
    finally:
        keras.config.set_dtype_policy(previous)
    copy.set_weights(net.get_weights())
    return copy


def device_call(model):
    """`model`'s forward pass under `jax.jit` on device arrays, variables already on the device."""
    jitted = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]
    return lambda x: jitted(trainable, frozen, x)


def time_calls(fn, x, runs, warmup):
    """(median, min, first-call) seconds; each call ends with `block_until_ready`."""
    start = time.perf_counter()
    jax.block_until_ready(fn(x))
    first = time.perf_counter() - start
    for _ in range(max(0, warmup - 1)):
        jax.block_until_ready(fn(x))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), first


def build_variants(net, args):
    """[(name, FastStylizer or None, network)] for the requested variants and precisions."""
    from keras_style.fast.stylizer import FastStylizer

    found = []
    if "fast" in args.variants:
        for precision in FAST_PRECISIONS:
            if precision in args.precisions:
                stylizer = FastStylizer(net, batch_size=max(args.batch_sizes), precision=precision)
                found.append((f"fast-{precision}", stylizer, stylizer._net))
    if "plain" in args.variants:
        for precision in PLAIN_POLICIES:
            if precision in args.precisions:
                model = plain_network(net, precision)
                if model is None:
                    print(f"plain-{precision}: skipped (model is not a TransformerNet)")
                else:
                    found.append((f"plain-{precision}", None, model))
    return found


def bench_inference(net, args, clock, results):
    variants = build_variants(net, args)
    calls = {name: device_call(model) for name, _, model in variants}
    quality_batch = max([b for b in args.batch_sizes if b <= args.quality_images] or [1])
    for size in args.sizes:
        photos, unique = load_photos(args.photos, size, max(args.batch_sizes + [quality_batch]))
        print(f"\n== {_label(size)}: {unique} distinct photos from {args.photos}", flush=True)
        outputs = {}  # variant -> numpy output of the quality batch
        for batch in sorted(set(args.batch_sizes + [quality_batch])):
            x_host = photos[:batch]
            x_dev = jax.device_put(x_host)
            for name, stylizer, _ in variants:
                if clock.spent():
                    print(f"budget spent: skipping {_label(size)} batch {batch} {name}")
                    results["skipped"].append(f"{_label(size)} b{batch} {name}")
                    continue
                modes = {"device": lambda x, c=calls[name]: c(x)}
                if stylizer is not None:
                    modes["host"] = stylizer._run
                    modes["api"] = lambda x, s=stylizer: s.stylize(x, tile_size=0)
                for mode in args.modes:
                    if mode not in modes or batch not in args.batch_sizes:
                        continue
                    fn = modes[mode]
                    try:
                        median, best, first = time_calls(
                            fn, x_dev if mode == "device" else x_host, args.runs, args.warmup
                        )
                    except Exception as e:  # e.g. out of memory: record and go on
                        print(f"{_label(size)} b{batch} {name} {mode}: FAILED {e!r:.300}")
                        results["errors"].append(f"{_label(size)} b{batch} {name} {mode}: {e!r}")
                        continue
                    row = {
                        "size": _label(size),
                        "batch": batch,
                        "variant": name,
                        "mode": mode,
                        "median_ms": median * 1e3,
                        "min_ms": best * 1e3,
                        "first_call_s": first,
                        "fps": batch / median,
                    }
                    results["inference"].append(row)
                    results.save()
                    print(
                        f"{_label(size):>9} b{batch:<3} {name:<15} {mode:<6} "
                        f"median {median * 1e3:9.2f} ms  min {best * 1e3:9.2f} ms  "
                        f"{row['fps']:9.1f} img/s  (first call {first:.1f} s)",
                        flush=True,
                    )
                if batch == quality_batch and not clock.spent():
                    outputs[name] = np.clip(np.asarray(calls[name](x_dev)), 0.0, 255.0)
        report_quality(size, outputs, quality_batch, results)


def report_quality(size, outputs, count, results):
    reference = outputs.get("plain-float32")
    if reference is None:
        print("quality: no plain-float32 reference measured; skipped")
        return
    for name, out in outputs.items():
        if name == "plain-float32":
            continue
        value, how = psnr(out, reference)
        worst = float(np.max(np.abs(out - reference)))
        bad = int(np.sum(~np.isfinite(out)))
        row = {"size": _label(size), "variant": name, "images": count}
        row.update(psnr_db=value, max_abs_diff=worst, nonfinite=bad, psnr_impl=how)
        results["quality"].append(row)
        results.save()
        print(
            f"quality {_label(size):>9} {name:<15} vs plain-float32 on {count} photos: "
            f"PSNR {value:6.2f} dB  max |diff| {worst:6.2f}" + (f"  NONFINITE {bad}" if bad else "")
        )


def bench_training(args, results):
    # keras_style.train.model and .config import no TensorFlow (the tf.data pipeline,
    # train.data, is not needed: the benchmark feeds numpy batches).
    from keras_style.train import config as train_config
    from keras_style.train import model as train_model

    size, batch = args.train_size, args.train_batch
    with tempfile.TemporaryDirectory() as workdir:
        config = train_config.TrainConfig(
            workdir=workdir,
            style_image=args.style_image,
            image_size=size,
            batch_size=batch,
            backbone="vgg16",
            vgg_weights=args.vgg_weights,
            width=args.width,
            mixed_precision=args.train_mixed,
            loss_precision=args.loss_precision,
            jit_compile=True,
            seed=0,
        )
        style = train_model.load_style_image(args.style_image, config.style_size)
        start = time.perf_counter()
        model = train_model.build_trainer(config, style_image=style)
        build_s = time.perf_counter() - start
    content, _ = load_photos(args.photos, (size, size), batch)

    def batches():
        while True:
            yield (content,)

    start = time.perf_counter()
    model.fit(batches(), epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)  # compile
    jax.block_until_ready([v.value for v in model.trainable_variables])
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    history = model.fit(
        batches(), epochs=1, steps_per_epoch=args.train_steps, verbose=0, shuffle=False
    )
    jax.block_until_ready([v.value for v in model.trainable_variables])
    seconds = time.perf_counter() - start
    row = {
        "size": size,
        "batch": batch,
        "steps": args.train_steps,
        "net_policy": "mixed_float16" if args.train_mixed else "float32",
        "loss_precision": model.perceptual_loss.extractor.precision,
        "vgg_weights": args.vgg_weights or "random",
        "steps_per_s": args.train_steps / seconds,
        "images_per_s": args.train_steps * batch / seconds,
        "ms_per_step": seconds / args.train_steps * 1e3,
        "build_s": build_s,
        "first_step_s": compile_s,
        "last_loss": float(history.history["loss"][-1]),
    }
    results["training"] = row
    results.save()
    print(
        f"\ntraining {size} px batch {batch} ({row['net_policy']} net, VGG16 "
        f"{row['loss_precision']}, {row['vgg_weights']} weights): {row['steps_per_s']:.2f} "
        f"steps/s = {row['images_per_s']:.1f} images/s ({row['ms_per_step']:.1f} ms/step; "
        f"first step {compile_s:.1f} s; loss {row['last_loss']:.4g})",
        flush=True,
    )


def report_target(args, results):
    rows = [r for r in results["inference"] if r["mode"] == "device"]
    if not rows:
        print("FAIL: no device-mode measurement")
        results["verdict"] = "FAIL"
        return
    measured = {r["size"] for r in rows}
    label = _label(TARGET_SIZE)
    if label not in measured:
        label = max(measured, key=lambda s: _parse_size(s)[0] * _parse_size(s)[1])
    best = max((r for r in rows if r["size"] == label), key=lambda r: r["fps"])
    verdict = "PASS" if best["fps"] >= args.target_fps else "FAIL"
    note = "" if label == _label(TARGET_SIZE) else f" (NOT the target size {_label(TARGET_SIZE)})"
    host = [r for r in results["inference"] if r["size"] == label and r["mode"] == "host"]
    host_note = ""
    if host:
        top = max(host, key=lambda r: r["fps"])
        host_note = f"; with host copies: {top['fps']:.1f} img/s ({top['variant']} b{top['batch']})"
    results["verdict"] = verdict
    results["best"] = best
    print(
        f"\n{verdict}: best at {label}{note}: {best['variant']} batch {best['batch']} "
        f"{best['fps']:.1f} img/s on device, target >= {args.target_fps:.0f}{host_note}"
    )


def environment(net_note):
    devices = jax.devices()
    return {
        "keras": keras.__version__,
        "jax": jax.__version__,
        "backend": keras.backend.backend(),
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind,
        "python": platform.python_version(),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "network": net_note,
        "cpu_count": os.cpu_count(),
    }


def main(argv=None):
    args = parse_args(argv)
    clock = Clock(args.budget_s)
    net, net_note = load_network(args)
    results = Results(args.json, args=vars(args), inference=[], quality=[], skipped=[], errors=[])
    results["environment"] = environment(net_note)
    results.save()
    env = results["environment"]
    print(
        f"keras {env['keras']} ({env['backend']}), jax {env['jax']} on {env['device_kind']} "
        f"x{len(env['devices'])}; network: {net_note}; target {args.target_fps:.0f} img/s",
        flush=True,
    )
    if args.sizes and args.batch_sizes:
        bench_inference(net, args, clock, results)
    if args.train_steps:
        try:
            bench_training(args, results)
        except Exception as e:
            print(f"training: FAILED {e!r:.500}")
            results["errors"].append(f"training: {e!r}")
    report_target(args, results)
    results["environment"]["tensorflow_imported"] = "tensorflow" in sys.modules
    results["wall_s"] = time.perf_counter() - clock.start
    results.save()
    if args.json:
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
