"""float32 against bfloat16 over a whole training run: loss curves and held-out quality.

    python bench/bench_precision_curves.py --out docs/training_speed/precision_curves.json \
        --plot docs/training_speed/precision_curves.png

Trains the same network twice with `python -m training.train
--config=configs/precision_curves_w1.json` (the training-speed issue's step: 256 px crops,
batch 4, width 1.0, VGG16 loss network, real photos, 1000 steps), once with the network and
the loss network in float32 and once in bfloat16, with the same seed: the same initial
weights, crops and order, so the curves are paired step for step. The runs are resumable
work dirs under `--runs` (rerunning the bench continues them; finished runs are only read);
`--parallel` trains both at once.

Then it reads their TensorBoard scalars (window means every 10 steps) and reports, per loss
part, the final value (mean of the windows of the last `--final_steps` steps), the noise of
that figure (standard error over those windows) and the bfloat16 run's difference from the
float32 run, with `within_noise` true when the difference is smaller than twice the
combined standard error. `equal_cpu` compares the loss at equal CPU time instead, with the
CPU seconds per step of each precision from a `bench_train_step.py` report (`--step_cost`).
Both final networks are also measured on held-out photos at full resolution, as the
bundled-style report measures them (style and content distance).
"""

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from bench_report import environment, write_json

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

PRECISIONS = ("float32", "bfloat16")
PARTS = ("loss", "content_loss", "style_loss", "tv_loss")


def train_commands(args):
    """{precision: argv} of the two training runs."""
    return {
        p: [
            sys.executable,
            "-m",
            "training.train",
            f"--config={args.config}",
            f"--net_precision={p}",
            f"--loss_precision={p}",
            f"--image_dir={args.image_dir}",
            f"--vgg_weights={args.vgg_weights}",
            f"--workdir={args.runs / p}",
        ]
        for p in PRECISIONS
    }


def train(commands, parallel):
    """Runs (or resumes) the training commands; raises if one fails."""
    if parallel:
        procs = [subprocess.Popen(c, cwd=REPO) for c in commands.values()]
        codes = [p.wait() for p in procs]
    else:
        codes = [subprocess.run(c, cwd=REPO, check=False).returncode for c in commands.values()]
    if any(codes):
        raise SystemExit(f"training failed with exit codes {codes}")


def final_stats(steps, values, last_step, final_steps):
    """Mean and standard error of the windows ending in (last_step - final_steps, last_step]."""
    tail = [
        v for s, v in zip(steps, values, strict=True) if last_step - final_steps < s <= last_step
    ]
    mean = float(sum(tail)) / len(tail)
    var = sum((v - mean) ** 2 for v in tail) / max(1, len(tail) - 1)
    return {"final": mean, "stderr": math.sqrt(var / len(tail)), "windows": len(tail)}


def compare(series, final_steps):
    """Per loss part: both runs' final figures, the difference and whether it is noise."""
    last = min(int(series[p]["loss"][0][-1]) for p in PRECISIONS)
    out = {}
    for part in PARTS:
        stats = {p: final_stats(*series[p][part], last, final_steps) for p in PRECISIONS}
        ref, new = stats["float32"], stats["bfloat16"]
        diff = new["final"] - ref["final"]
        noise = 2 * math.hypot(ref["stderr"], new["stderr"])
        out[part] = {
            **stats,
            "difference": diff,
            "relative_difference": diff / ref["final"] if ref["final"] else None,
            "two_stderr": noise,
            "within_noise": bool(abs(diff) <= noise),
        }
    return {"last_step": last, "final_steps": final_steps, "parts": out}


def equal_cpu(series, step_cost, width, final_steps):
    """Both runs' loss after the same CPU time: bfloat16's last step against float32's.

    `step_cost` is a `bench_train_step.py` report; its median CPU seconds per step at
    `width` for the float32 baseline and the bfloat16 version give the float32 step that
    costs what the bfloat16 run's last step cost.
    """
    report = json.loads(Path(step_cost).read_text())
    cpu = {}
    for run in report["runs"]:
        if run["width"] == width:
            cpu["float32" if run["version"] == "baseline" else "bfloat16"] = run["median_cpu_s"]
    last = int(series["bfloat16"]["loss"][0][-1])
    step = round(last * cpu["bfloat16"] / cpu["float32"])
    out = {"cpu_s_per_step": cpu, "step_cost": str(step_cost), "steps": {}}
    for p, at in (("bfloat16", last), ("float32", step)):
        stats = final_stats(*series[p]["loss"], at, final_steps)
        out["steps"][p] = {"step": at, "cpu_s": at * cpu[p], **stats}
    return out


def held_out(args, runs):
    """Full-resolution style and content distance of each run's final network."""
    from keras_style.core import images, losses
    from keras_style.fast.stylizer import FastStylizer
    from keras_style.quality import style_report
    from keras_style.slow import cache

    config = json.loads(Path(args.config).read_text())
    files = images.list_image_files(args.photos)
    files = files[:: max(1, len(files) // args.eval_photos)][: args.eval_photos]
    photos = {Path(f).stem: str(f) for f in files}
    painting = images.load_image(REPO / config["style_image"])
    extractor = cache.get_extractor(losses.LossConfig().layers, "vgg16", str(args.vgg_weights))
    out = {"photos": sorted(photos)}
    for p in PRECISIONS:
        figures, _ = style_report.full_resolution_figures(
            FastStylizer(str(runs / p / "model.keras")), photos, painting, extractor
        )
        out[p] = {k: figures[k] for k in ("style_distance", "content_distance")}
    return out


def run_record(workdir):
    """Wall time and steps of a work dir's training runs (its runs.json)."""
    runs = json.loads((workdir / "runs.json").read_text())
    steps = sum(r["to_step"] - r["from_step"] for r in runs)
    wall = sum(r["wall_s"] for r in runs)
    return {"steps": steps, "wall_s": wall, "wall_s_per_step": wall / steps, "runs": runs}


def plot(series, report, path):
    """Loss, content and style loss against step: float32 and bfloat16 overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_style.core.images import atomic_write
    from keras_style.quality import curves

    parts = ("loss", "content_loss", "style_loss")
    fig, axes = plt.subplots(1, len(parts), figsize=(13, 4), layout="constrained")
    for ax, part in zip(axes, parts, strict=True):
        for color, p in zip(("C0", "C3"), PRECISIONS, strict=True):
            steps, values = series[p][part]
            ax.plot(steps, values, color=color, alpha=curves.RAW_ALPHA, lw=0.8)
            final = report["comparison"]["parts"][part][p]["final"]
            ax.plot(
                steps,
                curves.smooth(values, 0.6),
                color=color,
                lw=1.8,
                label=f"{p} (final {final:.4g})",
            )
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(part)
        ax.legend()
    fig.suptitle("float32 vs bfloat16 training (width 1.0, 256 px, batch 4)")
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/precision_curves_w1.json")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "precision_curves")
    parser.add_argument("--image_dir", type=Path, default=SHARED / "data" / "photos")
    parser.add_argument("--photos", type=Path, default=SHARED / "data" / "eval_photos")
    parser.add_argument(
        "--vgg_weights",
        type=Path,
        default=SHARED / "weights" / "vgg16_hed_notop_fp16.weights.h5",
    )
    parser.add_argument("--parallel", action="store_true", help="train both runs at once")
    parser.add_argument("--final_steps", type=int, default=100)
    parser.add_argument(
        "--step_cost",
        type=Path,
        default=REPO / "docs" / "training_speed" / "train_step_zen4.json",
        help="bench_train_step.py report: CPU seconds per step of each precision",
    )
    parser.add_argument("--eval_photos", type=int, default=12)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()

    from keras_style.quality import curves

    report = {"environment": environment()}
    commands = train_commands(args)
    train(commands, args.parallel)
    series = {p: curves.read_scalars(args.runs / p / "logs") for p in PRECISIONS}
    report["commands"] = {p: " ".join(c[1:]) for p, c in commands.items()}
    report["runs"] = {p: run_record(args.runs / p) for p in PRECISIONS}
    report["comparison"] = compare(series, args.final_steps)
    width = json.loads(Path(args.config).read_text())["width"]
    report["equal_cpu"] = equal_cpu(series, args.step_cost, width, args.final_steps)
    report["held_out"] = held_out(args, args.runs)
    report["curves"] = {
        p: {
            part: [list(map(int, s)), [float(v) for v in vals]]
            for part, (s, vals) in series[p].items()
            if part in PARTS
        }
        for p in PRECISIONS
    }
    write_json(report, args.out)
    if args.plot:
        plot(series, report, args.plot)
    for part, row in report["comparison"]["parts"].items():
        print(
            f"{part:14s} float32 {row['float32']['final']:.5g} +- {row['float32']['stderr']:.2g}"
            f"  bfloat16 {row['bfloat16']['final']:.5g} +- {row['bfloat16']['stderr']:.2g}"
            f"  diff {row['difference']:+.3g}  within noise: {row['within_noise']}"
        )
    print("equal CPU:", json.dumps(report["equal_cpu"]["steps"]))
    print("held out:", json.dumps({p: report["held_out"][p] for p in PRECISIONS}))


if __name__ == "__main__":
    main()
