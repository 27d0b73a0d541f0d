"""Times the slow method one photo per run against several photos per run (`stylize_batch`).

The distillation dataset writer stylizes `batch_size` same-sized crops in one
L-BFGS-B run (`PairGenerator`). This benchmark runs the same photos through
`PairGenerator` with each batch size, interleaved over `--rounds` rounds (so
load changes hit every batch size alike), and prints and writes the median
wall and process CPU seconds per photo and the gain over one photo per run.

    python bench/bench_slow_batch.py \\
        --vgg_weights ../shared/weights/vgg16_hed_notop_fp16.weights.h5 \\
        [--photos ../shared/data/photos] [--style ../shared/data/styles/starry_night.jpg] \\
        [--num_photos 8] [--size 128] [--iterations 10] [--batch_sizes 1,4,8] [--rounds 3] \\
        [--out PATH.json]
"""

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHARED = Path(__file__).resolve().parents[2] / "shared"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", default=str(SHARED / "data" / "photos"))
    p.add_argument("--style", default=str(SHARED / "data" / "styles" / "starry_night.jpg"))
    p.add_argument("--vgg_weights", required=True, help="VGG16 weights file")
    p.add_argument("--num_photos", type=int, default=8, help="every n-th sorted photo, this many")
    p.add_argument("--size", type=int, default=128, help="square crop side")
    p.add_argument("--iterations", type=int, default=10, help="L-BFGS-B iterations")
    p.add_argument("--batch_sizes", default="1,4,8")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", help="also write the figures to this JSON file")
    args = p.parse_args()
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.num_photos < 1 or args.rounds < 1 or min(args.batch_sizes) < 1:
        raise ValueError("--num_photos, --rounds and --batch_sizes must be positive")
    return args


def main():
    args = parse_args()
    from bench_report import environment, write_json

    report = {"environment": environment(), "size": args.size, "iterations": args.iterations}
    from keras_style.core import images
    from keras_style.distill.generator import PairGenerator
    from keras_style.distill.recipe import SlowRecipe

    files = sorted(p for p in Path(args.photos).iterdir() if p.suffix.lower() in (".jpg", ".png"))
    files = files[:: max(1, len(files) // args.num_photos)][: args.num_photos]
    items = [(f.name, images.load_image(f)) for f in files]
    report |= {"photos": [name for name, _ in items], "rounds": args.rounds}

    def generator(batch_size):
        recipe = SlowRecipe(
            style_files=[args.style],
            image_size=args.size,
            backbone="vgg16",
            vgg_weights=args.vgg_weights,
            optimize={"optimizer": "lbfgs", "iterations": args.iterations, "multiscale": False}
            | {"init": "content"},
            batch_size=batch_size,
        )
        return PairGenerator(recipe)

    generators = {b: generator(b) for b in args.batch_sizes}
    report["precision"] = generators[args.batch_sizes[0]].recipe.precision
    for b, gen in generators.items():  # warm-up: VGG build and tracing per batch shape
        list(gen(items[:b]))
    times = {b: {"wall": [], "cpu": []} for b in args.batch_sizes}
    for r in range(args.rounds):
        for b, gen in generators.items():
            wall, cpu = time.perf_counter(), time.process_time()
            list(gen(items))
            times[b]["wall"].append((time.perf_counter() - wall) / len(items))
            times[b]["cpu"].append((time.process_time() - cpu) / len(items))
            print(
                f"round {r + 1} batch {b}: {times[b]['wall'][-1]:.2f} s/photo wall, "
                f"{times[b]['cpu'][-1]:.2f} s/photo CPU",
                flush=True,
            )
    first = args.batch_sizes[0]
    base_wall = statistics.median(times[first]["wall"])
    base_cpu = statistics.median(times[first]["cpu"])
    report["batches"] = []
    for b in args.batch_sizes:
        wall, cpu = statistics.median(times[b]["wall"]), statistics.median(times[b]["cpu"])
        row = {"batch_size": b, "wall_s_per_photo": wall, "cpu_s_per_photo": cpu}
        row |= {"gain_wall": base_wall / wall, "gain_cpu": base_cpu / cpu, "rounds": times[b]}
        report["batches"].append(row)
        print(
            f"batch {b}: median {wall:.2f} s/photo wall, {cpu:.2f} CPU; "
            f"gain {row['gain_wall']:.2f}x / {row['gain_cpu']:.2f}x",
            flush=True,
        )
    if args.out:
        write_json(report, args.out)


if __name__ == "__main__":
    main()
