"""Quality of style networks against training time, at full resolution, in one plot.

    python bench/bench_refine_quality.py --runs runs --styles udnie,great_wave \
        --before docs/bundled_styles/full_resolution_before.json \
        --after docs/bundled_styles/full_resolution_after.json --steps 300,600,900 \
        --extra great_wave:painting_512:runs/exp_gw_s512 \
        --out docs/bundled_styles/refine_quality.json --plot docs/bundled_styles/refine_quality.png

For each style, the checkpoints at `--steps` (those before the run's end) of its work dir
`<runs>/refine_<style>` (or `<runs>/keep/refine_<style>/ckpt-N`, where they
were copied before they were pruned) are measured on the held-out photos as
`training.report_styles --photos_dir` measures them: stylized at full
resolution with `FastStylizer`, distances at a 384 px long side. Step 0 is
the network the run started from, read from `--before`, and the last point
(the run's final step) the finished network, read from `--after` (both
report.json files of `training.report_styles`). Checkpoints already measured
in an existing `--out` file are taken from it, so styles can be measured as
their runs finish and the report completed at the end. Wall time of a point
is the step times the run's mean seconds per step (its runs.json).
`--extra STYLE:LABEL:WORKDIR` adds the final model of another work dir as a
single point (a recipe tried). The plot
has style distance and content distance against wall time, one line per
style, with the targets of the training issue (0.10 and 0.60) dashed.
"""

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

from bench_report import environment, write_json

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

TARGETS = {"style_distance": 0.10, "content_distance": 0.60}
TITLE = "Refining the bundled styles: quality at full resolution against time"


def _checkpoints(runs, style):
    """{step: folder} of the checkpoints of `style`'s refinement run."""
    found = {}
    for root in (runs / f"refine_{style}" / "checkpoints", runs / "keep" / f"refine_{style}"):
        for folder in root.glob("ckpt-*") if root.is_dir() else []:
            match = re.fullmatch(r"ckpt-(\d+)", folder.name)
            if match and (folder / "net.weights.h5").is_file():
                found[int(match.group(1))] = folder
    return found


def _seconds_per_step(workdir):
    runs = json.loads((workdir / "runs.json").read_text())
    steps = sum(r["to_step"] - r["from_step"] for r in runs)
    return sum(r["wall_s"] for r in runs) / steps, runs


def _model_file(checkpoint, config, folder):
    """The checkpoint's network as a .keras file in `folder`."""
    from keras_style.core.transformer_net import build_transformer_net

    net = build_transformer_net(config["width"], head=config["head"])
    net.load_weights(checkpoint / "net.weights.h5")
    path = Path(folder) / f"{checkpoint.name}.keras"
    net.save(path)
    return path


def _measure(model, photos, painting, extractor):
    from keras_style.fast.stylizer import FastStylizer
    from keras_style.quality import style_report

    figures, _ = style_report.full_resolution_figures(
        FastStylizer(model), photos, painting, extractor
    )
    return {k: figures[k] for k in ("style_distance", "content_distance")}


def _measured_before(out, style):
    """{step: point} of `style`'s checkpoints in an earlier report at `out` (reused, not rerun)."""
    if not Path(out).is_file():
        return {}
    entry = json.loads(Path(out).read_text()).get("styles", {}).get(style, {})
    return {p["step"]: p for p in entry.get("points", []) if p.get("checkpoint")}


def _style_points(args, style, photos, extractor, tmp):
    from keras_style.core import images

    workdir = args.runs / f"refine_{style}"
    config = json.loads((workdir / "config.json").read_text())
    per_step, runs = _seconds_per_step(workdir)
    painting = images.load_image(SHARED / "data" / "styles" / f"{style}.jpg")
    before = json.loads(Path(args.before).read_text())["styles"][style]
    after = json.loads(Path(args.after).read_text())["styles"][style]
    points = [{"step": 0, **{k: before[k] for k in TARGETS}}]
    checkpoints = _checkpoints(args.runs, style)
    measured = _measured_before(args.out, style)
    final_step = runs[-1]["to_step"]
    for step in [int(s) for s in args.steps.split(",") if int(s) < final_step]:
        if step not in checkpoints:
            raise ValueError(f"{style}: no checkpoint at step {step} under {args.runs}")
        if step in measured:
            points.append({k: measured[step][k] for k in ("step", "checkpoint", *TARGETS)})
            continue
        model = _model_file(checkpoints[step], config, tmp)
        figures = _measure(model, photos, painting, extractor)
        points.append({"step": step, "checkpoint": True, **figures})
        print(style, points[-1], flush=True)
    points.append({"step": final_step, **{k: after[k] for k in TARGETS}})
    for point in points:
        point["wall_s"] = round(point["step"] * per_step, 1)
    return {"seconds_per_step": per_step, "runs": runs, "config": config, "points": points}


def _extra_point(spec, photos, extractor):
    from keras_style.core import images

    style, label, workdir = spec.split(":", 2)
    workdir = Path(workdir)
    config = json.loads((workdir / "config.json").read_text())
    painting = images.load_image(SHARED / "data" / "styles" / f"{style}.jpg")
    figures = _measure(str(workdir / "model.keras"), photos, painting, extractor)
    return {"style": style, "label": label, "steps": config["steps"], "config": config, **figures}


def plot(report, path, title=TITLE):
    """Style and content distance against wall time: one line per style, extras as marks."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), dpi=100, layout="constrained")
    axes = figure.subplots(1, 2)
    for ax, key in zip(axes, TARGETS, strict=True):
        for style, entry in report["styles"].items():
            xs = [p["wall_s"] / 60 for p in entry["points"]]
            ax.plot(xs, [p[key] for p in entry["points"]], marker="o", label=style)
        for extra in report["extras"]:
            per_step = report["styles"].get(extra["style"], {}).get("seconds_per_step", 1.0)
            x = extra["steps"] * per_step / 60
            ax.plot(
                [x],
                [extra[key]],
                marker="x",
                markersize=9,
                linestyle="none",
                label=f"{extra['style']}: {extra['label']}",
            )
        ax.axhline(TARGETS[key], color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("training wall time of the run (minutes, this 2-core CPU)")
        ax.set_ylabel(key.replace("_", " ") + " (mean of the held-out photos)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(title)
    figure.savefig(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=REPO / "runs")
    parser.add_argument("--styles", default="udnie,great_wave,woman_with_hat_matisse,starry_night")
    parser.add_argument("--before", required=True, help="report.json of the starting networks")
    parser.add_argument("--after", required=True, help="report.json of the finished networks")
    parser.add_argument("--steps", default="300,600,900", help="checkpoints measured")
    parser.add_argument("--extra", action="append", default=[], help="STYLE:LABEL:WORKDIR")
    parser.add_argument("--photos_dir", default=str(SHARED / "data" / "eval_photos"))
    parser.add_argument(
        "--vgg_weights", default=str(SHARED / "weights" / "vgg16_hed_notop_fp16.weights.h5")
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--plot")
    args = parser.parse_args()

    from keras_style.core import images, losses
    from keras_style.slow import cache

    files = images.list_image_files(args.photos_dir)
    photos = {Path(f).stem: str(f) for f in files}
    extractor = cache.get_extractor(losses.LossConfig().layers, "vgg16", args.vgg_weights)
    report = {"environment": environment(), "photos_dir": args.photos_dir, "styles": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for style in args.styles.split(","):
            report["styles"][style] = _style_points(args, style, photos, extractor, tmp)
    report["extras"] = [_extra_point(spec, photos, extractor) for spec in args.extra]
    write_json(report, args.out)
    if args.plot:
        plot(report, args.plot)


if __name__ == "__main__":
    main()
