"""Benchmark of the fast path on a very large image: time, peak memory and seam visibility.

Stylizes an 8000 px image (a photo upscaled) with `FastStylizer`'s automatic
tiling (overlapping tiles, cosine cross-fades, instance-norm statistics shared
from a downscaled copy) and prints:

- wall time and peak resident memory of this process;
- a seam score: the mean absolute difference between neighbouring columns
  (rows) at the centres of the tiles' cross-fade zones, divided by the same
  figure over all columns (rows). A visible seam is a step, which raises the
  score above 1; 1.0 means the blend zones look like the rest of the image;
- a PNG crop around a corner where four tiles meet (for the docs).

    python bench/bench_tiling.py --model runs/starry_night/model.keras \\
        [--size 8000] [--photo PATH] [--crop_out docs/fast_tiling_crop.png] [--out PATH.json]
"""

import argparse
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from keras_style.core import images  # noqa: E402
from keras_style.fast import stylizer as fast  # noqa: E402

EXAMPLES = Path(fast.__file__).parents[1] / "assets" / "examples"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help=".keras network or bundled style name")
    p.add_argument("--photo", default=str(EXAMPLES / "chelsea.jpg"))
    p.add_argument("--size", type=int, default=8000, help="long side of the test image")
    p.add_argument("--precision", default="auto")
    p.add_argument("--crop_out", default=None, help="PNG of a tile-corner crop")
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    return p.parse_args()


def blend_centres(size, tile, overlap):
    """Pixel positions at the middle of each cross-fade zone along one axis."""
    spans = fast._tile_spans(size, tile, overlap)
    centres = []
    for (start, length), (next_start, _) in zip(spans, spans[1:], strict=False):
        centres.append((next_start + start + length) // 2)
    return centres


def seam_score(image, centres, axis):
    """Mean |neighbour difference| at `centres` over the mean at every position (axis 0 or 1)."""
    diff = np.abs(np.diff(image, axis=axis)).mean(axis=(1 - axis, 2))
    if not centres:
        return 1.0
    return float(diff[[c - 1 for c in centres]].mean() / diff.mean())


def main():
    args = parse_args()
    from bench_report import environment, write_json

    report = {"environment": environment(), "model": args.model, "photo": Path(args.photo).name}
    photo = images.load_image(args.photo)
    big = images.resize(photo, images.fit_size(photo.shape, long_side=args.size))
    stylizer = fast.FastStylizer(args.model, precision=args.precision)
    stylizer.stylize(big[:512, :512])  # warm-up: tracing
    start = time.perf_counter()
    out = stylizer.stylize(big)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    height, width = big.shape[:2]
    rows = blend_centres(height, fast.DEFAULT_TILE_SIZE, 64)
    cols = blend_centres(width, fast.DEFAULT_TILE_SIZE, 64)
    megapixels = width * height / 1e6
    print(f"image {width}x{height} ({megapixels:.1f} Mpx), precision {stylizer.precision}")
    print(f"tiles {len(rows) + 1} x {len(cols) + 1} of {fast.DEFAULT_TILE_SIZE} px, overlap 64")
    print(f"time {seconds:.1f} s, peak RSS {peak:.2f} GiB")
    print(
        f"seam score columns {seam_score(out, cols, 1):.3f}, rows {seam_score(out, rows, 0):.3f} "
        "(1.0 = blend zones like the rest)"
    )
    report |= {"width": width, "height": height, "megapixels": megapixels}
    report |= {"precision": stylizer.precision, "tile_size": fast.DEFAULT_TILE_SIZE}
    report |= {"overlap": 64, "tiles": [len(rows) + 1, len(cols) + 1], "seconds": seconds}
    report |= {"peak_rss_gib": peak, "seam_score_columns": seam_score(out, cols, 1)}
    report |= {"seam_score_rows": seam_score(out, rows, 0)}
    if args.crop_out and rows and cols:
        r, c = rows[len(rows) // 2], cols[len(cols) // 2]
        crop = out[max(0, r - 256) : r + 256, max(0, c - 256) : c + 256]
        images.save_image(crop, args.crop_out)
        print(f"wrote {args.crop_out} (512 px around the corner of 4 tiles: row {r}, col {c})")
        report["crop"] = {"path": args.crop_out, "row": r, "col": c}
    if args.out:
        write_json(report, args.out)


if __name__ == "__main__":
    main()
