"""Today's TFLite export against the XNNPACK form of the graph, in one run.

For each bundled style (width 0.5) this converts the any-size float32,
float16 and int8 models twice: from the Keras graph as it is
(`xnnpack_graph=False`, the export before issue 16) and from
`export_graph.xnnpack_copy` (the default now), plus the fixed-size float16
model for GPU delegates. It prints and writes to JSON:

- per file: XNNPACK partitions and the operators outside them, size, and the
  GPU-delegate op check (fixed float16);
- latency at 384x384 in the LiteRT interpreter (default XNNPACK delegate),
  1 and 2 threads: median of interleaved repetitions of every variant
  (the timed style only, `--timed_style`);
- quality against the Keras float32 model on held-out photos: centre crops at
  384x384, and every photo at its full size through the any-size models;
- pass/fail per target of the issue.

    python bench/bench_tflite_xnnpack.py --out docs/tflite_xnnpack/bench.json \\
        [--styles great_wave,starry_night,udnie,woman_with_hat_matisse] [--num_photos 12]

The 2-core machine is shared: the load average is recorded with the figures;
compare variants within one run.
"""

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

_OUT = flags.DEFINE_string("out", None, "JSON file to write.", required=True)
_STYLES = flags.DEFINE_list(
    "styles", ["great_wave", "starry_night", "udnie", "woman_with_hat_matisse"], "Styles."
)
_TIMED = flags.DEFINE_string("timed_style", "great_wave", "Style whose variants are timed.")
_SIZE = flags.DEFINE_integer("size", 384, "Square side for latency and the cropped quality.")
_THREADS = flags.DEFINE_list("threads", ["1", "2"], "Interpreter threads to time.")
_REPS = flags.DEFINE_integer("reps", 7, "Interleaved timed repetitions per variant.")
_PHOTOS = flags.DEFINE_string("photos", str(SHARED / "data" / "eval_photos"), "Held-out photos.")
_NUM_PHOTOS = flags.DEFINE_integer("num_photos", 12, "Held-out photos used (0: all).")
_CALIBRATION = flags.DEFINE_string(
    "calibration_dir", str(SHARED / "data" / "photos"), "int8 calibration photos."
)
_NUM_CAL = flags.DEFINE_integer("num_calibration", 100, "Calibration photos.")
_WHAT = flags.DEFINE_enum(
    "what",
    "all",
    ["all", "latency", "quality"],
    "Measure both, or only latency (run it on a quiet machine) or only quality (any load).",
)

#: dynamic_int8 (int8 weights, activations quantized per image at run time) is
#: the new graph only: XNNPACK runs its convolutions on int8 dot products too.
QUANTIZATIONS = ("float32", "float16", "int8", "dynamic_int8")
OLD_QUANTIZATIONS = ("float32", "float16", "int8")
#: (quantization, metric, comparison, bound) for every style, on both photo sets.
QUALITY_TARGETS = (
    ("float16", "psnr", ">=", 45.0),
    ("int8", "psnr", ">=", 30.0),
    ("int8", "ssim", ">=", 0.92),
)
FLOAT32_TARGET_MS = 150.0


_START = time.perf_counter()


def _log(message):
    print(f"[{time.perf_counter() - _START:7.1f}s] {message}", flush=True)


def _cpu_flags():
    """The vector-unit flags of /proc/cpuinfo (AVX-512, VNNI, AMX...) that set XNNPACK's kernels."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            line = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        return []
    keep = ("amx", "avx512", "avx_vnni", "avx2", "fma")
    return sorted(f for f in line.split(":", 1)[-1].split() if f.startswith(keep))


def _calibration():
    from keras_style.core import images
    from keras_style.export import convert as export_convert

    files = images.list_image_files(_CALIBRATION.value)
    order = np.random.default_rng(0).permutation(len(files))  # as export_tflite samples
    files = [files[i] for i in order][: _NUM_CAL.value]
    return export_convert.load_photos(files, 256)


def _convert(model, quantization, size, calibration, xnnpack):
    from keras_style.export import convert as export_convert

    content, _ = export_convert.convert_model_with_recipe(
        model, quantization, size, calibration, xnnpack=xnnpack
    )
    return content


def _files(styles, calibration, folder):
    """Converts every variant; returns {style: {variant: path}}."""
    from keras_style.fast import styles as bundled

    paths = {}
    for style in styles:
        model = bundled.load_style(style)
        graphs = (("old", False), ("new", True)) if style == _TIMED.value else (("new", True),)
        variants = {}
        for tag, xnnpack in graphs:
            for q in QUANTIZATIONS if xnnpack else OLD_QUANTIZATIONS:
                _log(f"{style}: converting {tag} {q}")
                path = folder / f"{style}_{tag}_{q}.tflite"
                path.write_bytes(_convert(model, q, None, calibration, xnnpack))
                variants[f"{tag}_{q}"] = path
        _log(f"{style}: converting new float16_{_SIZE.value}")
        path = folder / f"{style}_new_float16_{_SIZE.value}.tflite"
        path.write_bytes(_convert(model, "float16", _SIZE.value, None, True))
        variants[f"new_float16_{_SIZE.value}"] = path
        paths[style] = variants
    return paths


def _describe(path, size):
    from keras_style.export import delegate as export_delegate
    from keras_style.export import ops as export_ops

    fixed = "_float16_" in path.name
    info = {
        "bytes": path.stat().st_size,
        "xnnpack": export_delegate.delegation(path, export_delegate.test_shape(None, size)),
    }
    if fixed:
        info["gpu_delegate_issues"] = export_ops.gpu_delegate_issues(path)
    return info


def _latency(variants, size, threads, reps):
    """{threads: {variant: median ms}}: every variant timed in turn, `reps` rounds."""
    from keras_style.export import verify as export_verify

    image = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    result = {}
    for t in threads:
        runners = {}
        for name, path in variants.items():
            runner = export_verify.TFLiteRunner(path, num_threads=t)
            runner(image)  # allocate and warm up
            runners[name] = runner
        times = {name: [] for name in runners}
        for _ in range(reps):
            for name, runner in runners.items():
                start = time.perf_counter()
                runner.interpreter.invoke()
                times[name].append((time.perf_counter() - start) * 1000.0)
        result[str(t)] = {name: statistics.median(v) for name, v in times.items()}
        _log(f"{t} thread(s): " + ", ".join(f"{n} {m:.0f} ms" for n, m in result[str(t)].items()))
    return result


def _photos():
    from keras_style.core import images

    files = images.list_image_files(_PHOTOS.value)
    if _NUM_PHOTOS.value:
        files = files[: _NUM_PHOTOS.value]
    return files, [images.load_image(f) for f in files]


def _quality(model, variants, photos, size):
    """PSNR/SSIM of each any-size file against Keras: 384 crops and full-size photos."""
    from keras_style.core import images, metrics
    from keras_style.export import verify as export_verify

    crops = np.stack([images.center_square(p, size) for p in photos])
    ref_crops = np.concatenate([model.predict_on_batch(c[None]) for c in crops])
    ref_full = [np.asarray(model.predict_on_batch(p[None]))[0] for p in photos]
    result = {}
    for name, path in variants.items():
        if name.endswith(f"_{size}"):
            continue
        runner = export_verify.TFLiteRunner(path, num_threads=2)
        out_crops = np.concatenate([runner(c[None]) for c in crops])
        outputs = [runner(p[None])[0] for p in photos]
        full = [
            (metrics.psnr(o, r), metrics.ssim(o, r)) for o, r in zip(outputs, ref_full, strict=True)
        ]
        result[name] = {
            f"{size}px": {
                "psnr": metrics.psnr(out_crops, ref_crops),
                "ssim": metrics.ssim(out_crops, ref_crops),
            },
            "full_size": {
                "psnr": float(np.mean([f[0] for f in full])),
                "ssim": float(np.mean([f[1] for f in full])),
                "psnr_min": float(np.min([f[0] for f in full])),
                "ssim_min": float(np.min([f[1] for f in full])),
            },
        }
        _log(f"  {name}: {json.dumps(result[name])}")
    return result


def _checks(report):
    """(description, value, passed) for each target of the issue."""
    checks = []
    for style, entry in report["styles"].items():
        for name, info in entry["files"].items():
            if name.startswith("new_"):
                parts = info["xnnpack"]
                ok = parts["partitions"] == 1 and not parts["outside"]
                checks.append((f"{style} {name}: 1 partition, nothing outside", parts, ok))
            if "gpu_delegate_issues" in info:
                issues = info["gpu_delegate_issues"]
                checks.append((f"{style} {name}: GPU-delegate op check", issues, not issues))
        for q, key, _, bound in QUALITY_TARGETS if "quality" in entry else ():
            for where, value in entry["quality"][f"new_{q}"].items():
                checks.append(
                    (f"{style} {q} {where} {key} >= {bound:g}", value[key], value[key] >= bound)
                )
    for t, ms in report.get("latency_ms", {}).items():
        checks.append(
            (
                f"float32 <= {FLOAT32_TARGET_MS:g} ms ({t}T)",
                ms["new_float32"],
                ms["new_float32"] <= FLOAT32_TARGET_MS,
            )
        )
        ratio = ms["new_int8"] / ms["new_float32"]
        checks.append((f"int8 <= 0.5 x float32 ({t}T)", ratio, ratio <= 0.5))
        ratio = ms["new_dynamic_int8"] / ms["new_float32"]
        checks.append((f"dynamic_int8 <= 0.5 x float32 ({t}T)", ratio, ratio <= 0.5))
        checks.append(
            (
                f"float16 <= float32 ({t}T)",
                ms["new_float16"] / ms["new_float32"],
                ms["new_float16"] <= ms["new_float32"] * 1.05,
            )
        )
        checks.append(
            (
                f"speed-up of float32 over today's export ({t}T)",
                ms["old_float32"] / ms["new_float32"],
                ms["old_float32"] / ms["new_float32"] >= 2.27,
            )
        )
    return checks  # fmt: skip


def main(argv):
    del argv
    from keras_style.fast import styles as bundled

    size, threads = _SIZE.value, [int(t) for t in _THREADS.value]
    report = {
        "command": "python bench/bench_tflite_xnnpack.py " + " ".join(sys.argv[1:]),
        "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "cpu_flags": _cpu_flags(),
        "load_average_start": os.getloadavg(),
        "size": size,
        "styles": {},
    }
    calibration = _calibration()
    files, photos = _photos()
    report["photos"] = [Path(f).name for f in files]
    with tempfile.TemporaryDirectory() as tmp:
        paths = _files(_STYLES.value, calibration, Path(tmp))
        for style, variants in paths.items():
            report["styles"][style] = {
                "files": {name: _describe(path, size) for name, path in variants.items()}
            }
        if _TIMED.value in paths and _WHAT.value != "quality":
            timed = {k: v for k, v in paths[_TIMED.value].items() if not k.endswith(f"_{size}")}
            report["latency_ms"] = _latency(timed, size, threads, _REPS.value)
        for style, variants in paths.items() if _WHAT.value != "latency" else ():
            _log(f"{style}: quality on {len(photos)} photos")
            report["styles"][style]["quality"] = _quality(
                bundled.load_style(style), variants, photos, size
            )
    report["load_average_end"] = os.getloadavg()
    report["checks"] = [{"target": d, "value": v, "passed": bool(p)} for d, v, p in _checks(report)]
    for check in report["checks"]:
        print(f"[{'PASS' if check['passed'] else 'FAIL'}] {check['target']}: {check['value']}")
    from keras_style.core import jsonio

    jsonio.write_json(Path(_OUT.value), report)
    print(f"written {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
