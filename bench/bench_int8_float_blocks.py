"""How many blocks the int8 TFLite model keeps in float: latency against quality.

    python bench/bench_int8_float_blocks.py --out docs/tflite_xnnpack/int8_float_blocks.json \
        [--styles great_wave,starry_night,udnie,woman_with_hat_matisse] [--blocks 0,1,2] \
        [--heads float,int8]

Full int8 keeps `--int8_float_blocks` conv blocks before the output head in
float, and the head itself with `--int8_float_head`
(`export.convert.prepare_for_quantization`). Fewer float layers make the file
faster on CPUs with int8 dot products and move its output further from the
float network's. For every bundled style this converts the any-size float32
and float16 models and one int8 model per block count and head choice
(`--heads float,int8`; XNNPACK graph, the exporter's default) and writes:

- latency at `--size`x`--size` in the LiteRT interpreter (default XNNPACK
  delegate), 1 and 2 threads, median of interleaved repetitions, for
  `--timed_style`, with each file's ratio to float32;
- quality against the Keras float32 model on every held-out photo: centre
  crops at `--size` and each photo at its full size (mean and worst PSNR/SSIM).
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from bench_report import environment, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))


def _files(model, blocks, heads, calibration, folder, style):
    from keras_style.export import convert

    paths = {}
    int8 = [(b, h) for b in blocks for h in heads]
    for name, quantization, variant in [
        ("float32", "float32", None),
        ("float16", "float16", None),
        *((f"int8_{b}_float_blocks_{h}_head", "int8", (b, h)) for b, h in int8),
    ]:
        path = Path(folder) / f"{style}_{name}.tflite"
        extra = {}
        if variant is not None:
            count, head = variant
            extra = {"calibration": calibration, "float_blocks": count}
            extra["float_clip_head"] = head == "float"
        path.write_bytes(convert.convert_model_with_recipe(model, quantization, **extra)[0])
        paths[name] = path
    return paths


def _latency(paths, size, threads, reps):
    """{threads: {file: ms and ratio to float32}}, timed as bench_tflite_xnnpack times."""
    from bench_tflite_xnnpack import _latency as interleaved_medians

    result = {}
    for t, median in interleaved_medians(paths, size, threads, reps).items():
        result[t] = {
            name: {"ms": round(ms, 1), "ratio_to_float32": round(ms / median["float32"], 3)}
            for name, ms in median.items()
        }
    return result


def _quality(model, paths, photos, size):
    from keras_style.core import images, metrics
    from keras_style.export import verify

    crops = [images.center_square(p, size) for p in photos]
    sets = {
        "crop": (crops, [np.asarray(model.predict_on_batch(c[None]))[0] for c in crops]),
        "full": (photos, [np.asarray(model.predict_on_batch(p[None]))[0] for p in photos]),
    }
    result = {}
    for name, path in paths.items():
        if name == "float32":
            continue
        runner = verify.TFLiteRunner(path, num_threads=2)
        result[name] = {}
        for tag, (inputs, references) in sets.items():
            outputs = [runner(x[None])[0] for x in inputs]
            psnr = [metrics.psnr(a, b) for a, b in zip(outputs, references, strict=True)]
            ssim = [metrics.ssim(a, b) for a, b in zip(outputs, references, strict=True)]
            result[name][tag] = {
                "psnr": float(np.mean(psnr)),
                "ssim": float(np.mean(ssim)),
                "psnr_min": float(np.min(psnr)),
                "ssim_min": float(np.min(ssim)),
            }
        print(name, result[name], flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--styles", default="great_wave,starry_night,udnie,woman_with_hat_matisse")
    parser.add_argument("--timed_style", default="great_wave")
    parser.add_argument("--blocks", default="0,1,2")
    parser.add_argument(
        "--heads", default="float,int8", help="clip head of the int8 files: float, int8 or both"
    )
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--photos", default=str(SHARED / "data" / "eval_photos"))
    parser.add_argument("--calibration_dir", default=str(SHARED / "data" / "photos"))
    parser.add_argument("--num_calibration", type=int, default=100)
    parser.add_argument("--what", choices=("all", "latency", "quality"), default="all")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from keras_style.core import images
    from keras_style.export import convert
    from keras_style.fast import styles as bundled

    files = images.list_image_files(args.calibration_dir)
    order = np.random.default_rng(0).permutation(len(files))  # as export_tflite samples
    calibration = convert.load_photos([files[i] for i in order][: args.num_calibration], 256)
    photo_files = images.list_image_files(args.photos)
    photos = [images.load_image(f) for f in photo_files] if args.what != "latency" else []
    blocks = [int(b) for b in args.blocks.split(",")]
    report = {
        "command": "python bench/bench_int8_float_blocks.py " + " ".join(sys.argv[1:]),
        "environment": environment(),
        "load_average_start": os.getloadavg(),
        "size": args.size,
        "photos": [Path(f).name for f in photo_files] if photos else [],
        "styles": {},
    }
    styles = args.styles.split(",") if args.what != "latency" else [args.timed_style]
    with tempfile.TemporaryDirectory() as tmp:
        for style in styles:
            model = bundled.load_style(style)
            paths = _files(model, blocks, args.heads.split(","), calibration, tmp, style)
            entry = report["styles"].setdefault(style, {})
            if style == args.timed_style and args.what != "quality":
                threads = [int(t) for t in args.threads.split(",")]
                report["latency_ms"] = _latency(paths, args.size, threads, args.reps)
            if photos:
                entry["quality"] = _quality(model, paths, photos, args.size)
    report["load_average_end"] = os.getloadavg()
    write_json(report, args.out)
    print("written", args.out)


if __name__ == "__main__":
    main()
