"""`FastStylizer` latency and bfloat16 quality: a git revision against the current code, one run.

    python bench/bench_keras_inference.py --baseline HEAD \
        --out docs/tflite_xnnpack/keras_inference_amx.json

Each version runs in fresh processes (rounds alternate baseline and current,
so a burst of load hits both alike) with the package of its own tree:

- latency: `FastStylizer(net, precision=p).stylize(photo)` on a 512x512
  photo, for a `TransformerNet` of `--width` with seeded random weights (the
  arithmetic of a trained one), float32 and bfloat16; median of `--reps`
  calls after two warm-up calls;
- quality: each bundled style (trained, width 0.5) stylizes `--num_photos`
  held-out photos at 512 px long side with `precision="bfloat16"`; PSNR and
  SSIM against the plain Keras model in float32 on the same input.

The CPU's model and AMX/AVX-512 flags are recorded: bfloat16 is fast only
with AMX tiles (or AVX512_BF16 on AMD Zen 4), see docs/precision.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train_step import _checkout, _cpu  # noqa: E402

_DRIVER = r"""
import json, sys, time, statistics
import keras, numpy as np
from keras_style.core import images, metrics
from keras_style.core.transformer_net import TransformerNet
from keras_style.fast import styles
from keras_style.fast.stylizer import FastStylizer
args = json.loads(sys.argv[1])
out = {"latency_ms": {}, "quality": {}}
keras.utils.set_random_seed(0)
net = TransformerNet(width=args["width"])
photo = np.random.default_rng(2).uniform(0, 255, (args["size"], args["size"], 3)).astype("float32")
for precision in ("float32", "bfloat16"):
    stylizer = FastStylizer(net, precision=precision)
    stylizer.stylize(photo)
    stylizer.stylize(photo)
    times = []
    for _ in range(args["reps"]):
        start = time.perf_counter()
        stylizer.stylize(photo)
        times.append(1000 * (time.perf_counter() - start))
    out["latency_ms"][precision] = times
for style in args["styles"]:
    model = styles.resolve_model(style)
    fast = FastStylizer(model, precision="bfloat16")
    scores = []
    for path in args["photos"]:
        image = images.load_image(path)
        image = images.resize(image, images.fit_size(image.shape, max_size=args["size"]))
        reference = np.clip(np.asarray(model(image[None]))[0], 0, 255)
        result = fast.stylize(image, tile_size=0)
        psnr, ssim = metrics.psnr(result, reference), metrics.ssim(result, reference)
        scores.append([float(psnr), float(ssim)])
    out["quality"][style] = scores
print("RESULT " + json.dumps(out))
"""


def _run(tree, args):
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(args)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if out.returncode or line is None:
        raise RuntimeError(f"run failed in {tree}:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def _summary(runs):
    """Median latencies over all rounds, and mean/min quality per style."""
    latency = {
        p: round(statistics.median(t for r in runs for t in r["latency_ms"][p]), 1)
        for p in ("float32", "bfloat16")
    }
    quality = {}
    for style in runs[0]["quality"]:
        scores = runs[0]["quality"][style]  # deterministic: the first round's
        psnr, ssim = [s[0] for s in scores], [s[1] for s in scores]
        quality[style] = {
            "psnr_mean": round(statistics.mean(psnr), 2),
            "psnr_min": round(min(psnr), 2),
            "ssim_mean": round(statistics.mean(ssim), 6),
            "ssim_min": round(min(ssim), 6),
        }
    return {"median_latency_ms": latency, "bfloat16_quality": quality}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare with")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--reps", type=int, default=10, help="timed calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photos", default=str(SHARED / "data" / "eval_photos"))
    parser.add_argument("--num_photos", type=int, default=8)
    parser.add_argument("--styles", default="great_wave,starry_night,udnie,woman_with_hat_matisse")
    parser.add_argument("--target_ms", type=float, default=80.0)
    parser.add_argument("--out", help="write the figures here as JSON")
    args = parser.parse_args()
    photos = sorted(str(p) for p in Path(args.photos).iterdir() if p.is_file())
    job = {
        "width": args.width,
        "size": args.size,
        "reps": args.reps,
        "styles": [s for s in args.styles.split(",") if s],
        "photos": photos[: args.num_photos],
    }
    results = {"command": " ".join(["python", *sys.argv]), "cpu": _cpu(), "job": job}
    runs = {"baseline": [], "current": []}
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline"
        _checkout(args.baseline, baseline)
        try:
            for round_index in range(args.rounds):
                for name, tree in (("baseline", baseline), ("current", REPO)):
                    run = _run(tree, {**job, "styles": job["styles"] if not round_index else []})
                    if round_index:
                        run["quality"] = runs[name][0]["quality"]
                    runs[name].append(run)
                    med = {p: statistics.median(t) for p, t in run["latency_ms"].items()}
                    print(
                        f"round {round_index} {name:8s}: "
                        + ", ".join(f"{p} {ms:.1f} ms" for p, ms in med.items()),
                        flush=True,
                    )
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)],
                capture_output=True,
            )
    results["runs"] = runs
    results["summary"] = {name: _summary(r) for name, r in runs.items()}
    best = results["summary"]["current"]["median_latency_ms"]["bfloat16"]
    results["target"] = {"target_ms": args.target_ms, "met": best <= args.target_ms}
    results["load_average"] = os.getloadavg()
    print(json.dumps(results["summary"], indent=1))
    print(
        f"current bfloat16 {best} ms, target {args.target_ms} ms: "
        + ("met" if best <= args.target_ms else "NOT met")
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
