"""Benchmark of the slow path: quality and time of the default `stylize()` vs a plain Adam baseline.

Usage (real weights; figures in the closing note of issue 2):

    python bench/bench_gatys.py --backbone vgg16 \
        --vgg_weights ../shared/weights/vgg16_hed_notop_fp16.weights.h5 \
        --style ../shared/data/styles/starry_night.jpg

Sections (all in one run, so both sides see the same machine load):
  quality  baseline (plain float32 single-scale Adam, 300 steps at 384 px)
           vs the default `stylize()` (L-BFGS-B; bfloat16 loss network where
           the CPU has bfloat16 instructions) and the same default forced to
           float32; Gram-style and content distances measured by one float32
           evaluator; side-by-side PNG and JSON in docs/.
  speed    seconds per iteration at 256, 512 and 1024 px (L-BFGS and Adam,
           default precision and float32).
  memory   peak resident memory of a 2048 px multiscale run (a subprocess).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from bench_report import environment  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import keras_style  # noqa: E402
from keras_style.core import images, losses, vgg  # noqa: E402
from keras_style.slow import cache  # noqa: E402

EXAMPLES = Path(keras_style.__file__).parent / "assets" / "examples"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--content", default=str(EXAMPLES / "chelsea.jpg"))
    p.add_argument("--style", default=str(EXAMPLES / "starry_night.jpg"))
    p.add_argument("--backbone", default="vgg19")
    p.add_argument("--vgg_weights", default="imagenet")
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--baseline_steps", type=int, default=300)
    p.add_argument("--baseline_lr", type=float, default=5.0)
    p.add_argument("--sections", default="quality,speed,memory")
    p.add_argument("--memory_size", type=int, default=2048)
    p.add_argument("--memory_iterations", type=int, default=3)
    p.add_argument("--out_dir", default="docs")
    p.add_argument(
        "--style_weight",
        type=float,
        default=None,
        help="style weight of both the baseline and the default (None: the package default)",
    )
    p.add_argument(
        "--name", default="gatys_benchmark", help="stem of the JSON and PNG written to --out_dir"
    )
    return p.parse_args()


def timed_stylize(content, style, args, **options):
    """Runs stylize() and returns (image, seconds, per-iteration timestamps)."""
    stamps = []
    start = time.perf_counter()
    image = keras_style.stylize(
        content,
        style,
        size=args.size,
        backbone=args.backbone,
        vgg_weights=args.vgg_weights,
        style_weight=args.style_weight,
        verbose=0,
        callback=lambda *a: stamps.append(time.perf_counter()),
        callback_every=1,
        **options,
    )
    return image, time.perf_counter() - start, stamps


def distances(content, style, outputs, args):
    """Gram-style and content distances of each output, with one evaluator at the output size."""
    config = losses.LossConfig()
    loss = losses.PerceptualLoss(
        cache.get_extractor(config.layers, args.backbone, args.vgg_weights), config
    )
    shape = next(iter(outputs.values())).shape
    content_small = images.resize(content, shape[:2])
    style_small = images.resize(style, images.fit_size(style.shape, long_side=args.size))
    targets = loss.content_targets(content_small[None])
    grams = loss.style_targets([style_small])
    result = {}
    for name, image in outputs.items():
        parts = loss.parts(image[None], targets, grams)
        result[name] = {k: float(np.asarray(v)[0]) for k, v in parts.items()}
    return result


def side_by_side(panels, path):
    """Writes labelled panels (name -> image) next to each other."""
    height = max(p.shape[0] for p in panels.values())
    tiles = []
    for name, image in panels.items():
        scaled = images.resize(image, (height, round(image.shape[1] * height / image.shape[0])))
        tile = Image.fromarray(images.to_uint8(scaled))
        canvas = Image.new("RGB", (tile.width, height + 18), "white")
        canvas.paste(tile, (0, 18))
        ImageDraw.Draw(canvas).text((4, 3), name, fill="black")
        tiles.append(canvas)
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 4 * len(tiles), height + 18), "white")
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width + 4
    with images.atomic_write(path) as tmp:
        sheet.save(tmp, format="PNG")


def quality(args, report):
    content, style = images.load_image(args.content), images.load_image(args.style)
    for precision in ("auto", "float32"):
        keras_style.stylize(
            content,
            style,
            size=64,
            iterations=2,
            backbone=args.backbone,
            vgg_weights=args.vgg_weights,
            verbose=0,
            precision=precision,
        )  # build both VGGs once, untimed
    base, base_s, _ = timed_stylize(
        content,
        style,
        args,
        optimizer="adam",
        iterations=args.baseline_steps,
        multiscale=False,
        learning_rate=args.baseline_lr,
        precision="float32",
    )
    ours, ours_s, _ = timed_stylize(content, style, args)
    f32, f32_s, _ = timed_stylize(content, style, args, precision="float32")
    outputs = {"baseline": base, "default": ours, "default_float32": f32}
    dist = distances(content, style, outputs, args)
    report["quality"] = {
        "size": args.size,
        "style_weight": args.style_weight,
        "default_precision": vgg.resolve_precision("auto"),
        "baseline_seconds": base_s,
        "default_seconds": ours_s,
        "default_float32_seconds": f32_s,
        "time_ratio": ours_s / base_s,
        "float32_time_ratio": f32_s / base_s,
        "distances": dist,
        "style_ratio": dist["default"]["style_loss"] / dist["baseline"]["style_loss"],
        "content_ratio": dist["default"]["content_loss"] / dist["baseline"]["content_loss"],
    }
    q = report["quality"]
    q["meets_target"] = bool(
        q["time_ratio"] <= 1 / 3 and q["style_ratio"] <= 1.0 and q["content_ratio"] <= 1.10
    )
    print(
        f"baseline Adam {args.baseline_steps} steps @ {args.size}px: {base_s:.1f} s, "
        f"style {dist['baseline']['style_loss']:.4f}, "
        f"content {dist['baseline']['content_loss']:.4f}"
    )
    print(
        f"default stylize() @ {args.size}px: {ours_s:.1f} s, "
        f"style {dist['default']['style_loss']:.4f}, content {dist['default']['content_loss']:.4f}"
    )
    print(
        f"default stylize(precision='float32'): {f32_s:.1f} s, "
        f"style {dist['default_float32']['style_loss']:.4f}, "
        f"content {dist['default_float32']['content_loss']:.4f}"
    )
    print(
        f"time ratio {q['time_ratio']:.3f} (target <= 0.333), style ratio {q['style_ratio']:.3f} "
        f"(<= 1), content ratio {q['content_ratio']:.3f} (<= 1.10) -> meets: {q['meets_target']}"
    )
    out = Path(args.out_dir)
    out.mkdir(exist_ok=True)
    side_by_side(
        {
            "content": images.resize(content, base.shape[:2]),
            "style": style,
            f"baseline Adam x{args.baseline_steps} ({base_s:.0f} s)": base,
            f"default stylize() ({ours_s:.0f} s, {q['default_precision']})": ours,
        },
        out / f"{args.name}.png",
    )


def speed(args, report):
    content, style = images.load_image(args.content), images.load_image(args.style)
    report["seconds_per_iteration"] = {}
    for size in (256, 512, 1024):
        for optimizer in ("lbfgs", "adam"):
            for precision in ("auto", "float32"):
                args_at = argparse.Namespace(**{**vars(args), "size": size})
                _, _, stamps = timed_stylize(
                    content,
                    style,
                    args_at,
                    optimizer=optimizer,
                    iterations=6,
                    multiscale=False,
                    precision=precision,
                )
                per_iter = (stamps[-1] - stamps[1]) / (len(stamps) - 2)
                name = vgg.resolve_precision(precision)
                report["seconds_per_iteration"][f"{optimizer}@{size}/{name}"] = per_iter
                print(f"{optimizer:5s} @ {size:4d}px {name:8s}: {per_iter:.3f} s/iteration")


def memory(args, report):
    code = (
        "import resource, sys, time, keras_style\n"
        f"t = time.time(); img = keras_style.stylize({args.content!r}, {args.style!r}, "
        f"size={args.memory_size}, iterations={args.memory_iterations}, backbone={args.backbone!r},"
        f" vgg_weights={args.vgg_weights!r}, verbose=0)\n"
        "print(img.shape, time.time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    shape, seconds, rss_kb = out.stdout.strip().rsplit(" ", 2)[0], *out.stdout.split()[-2:]
    report["memory"] = {
        "size": args.memory_size,
        "iterations_per_level": args.memory_iterations,
        "output_shape": shape,
        "seconds": float(seconds),
        "peak_rss_gib": int(rss_kb) / 2**20,
    }
    print(
        f"{args.memory_size}px multiscale ({args.memory_iterations} it/level): output {shape}, "
        f"{float(seconds):.0f} s, peak RSS {int(rss_kb) / 2**20:.2f} GiB"
    )


def main():
    args = parse_args()
    report = {
        "environment": environment(),
        "backbone": args.backbone,
        "vgg_weights": args.vgg_weights,
        "content": args.content,
        "style": args.style,
    }
    sections = args.sections.split(",")
    for name, fn in (("quality", quality), ("speed", speed), ("memory", memory)):
        if name in sections:
            fn(args, report)
    report["this_process_peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    Path(args.out_dir).mkdir(exist_ok=True)
    with images.atomic_write(Path(args.out_dir) / f"{args.name}.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
