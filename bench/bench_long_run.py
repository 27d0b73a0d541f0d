"""Quality of one long training run at every kept checkpoint, at full resolution.

    python bench/bench_long_run.py --run great_wave=runs/s15/gw_long \
        --run great_wave=runs/s15/gw_cosine --start great_wave \
        --out docs/bundled_styles/long_run_great_wave.json \
        --plot docs/bundled_styles/long_run_great_wave.png

Answers "does the style distance keep falling if we train longer?" for a run
that continues a network (`training.train --init_from`). Step 0 is the network
the run started from (`--start`: a bundled style name or a `.keras` file),
measured in the same process as the checkpoints; then every checkpoint kept
in the work dir (`checkpoints/ckpt-N`) and, if the run finished, its
`model.keras`. A run continued in a second work dir (another schedule,
started with `--init_from=<first>/checkpoints/ckpt-N`) is a second `--run`:
its steps are counted on from the first one's last step.

Each network is measured as `training.report_styles --photos_dir` measures
the bundled styles: every held-out photo stylized whole by `FastStylizer`,
distances to the painting and the photo at a 384 px long side
(`style_report.full_resolution_figures`). Wall time of a point is its step
times its segment's mean seconds per step (`runs.json`). The plot reuses
`bench_refine_quality.plot`, with the training issue's targets dashed.
"""

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

from bench_refine_quality import SHARED, TARGETS, _measure, _model_file, _seconds_per_step, plot
from bench_report import environment, write_json

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def checkpoints(workdir):
    """{step: folder} of the checkpoints kept in a training work dir."""
    found = {}
    for folder in (workdir / "checkpoints").glob("ckpt-*"):
        match = re.fullmatch(r"ckpt-(\d+)", folder.name)
        if match and (folder / "net.weights.h5").is_file():
            found[int(match.group(1))] = folder
    return dict(sorted(found.items()))


def _segment_models(workdir, config, tmp):
    """{step: model} of one work dir: its kept checkpoints, then its final model if it finished."""
    _, runs = _seconds_per_step(workdir)
    kept = checkpoints(workdir)
    models = {step: _model_file(folder, config, tmp) for step, folder in kept.items()}
    final_step = runs[-1]["to_step"]
    if (workdir / "model.keras").is_file() and final_step not in models:
        models[final_step] = workdir / "model.keras"
    return models


def run_points(style, workdirs, start, photos, extractor, tmp):
    """The curve of a run made of `workdirs`, each started from the last one's end.

    Returns:
        {"segments": [{"workdir", "seconds_per_step", "runs", "config"}], "points": [...]}
        with points at global steps (a segment's steps follow the one before).
    """
    from keras_style.core import images

    painting = images.load_image(SHARED / "data" / "styles" / f"{style}.jpg")
    models, segments, offset, wall = {0: (start, 0.0, 0)}, [], 0, 0.0
    for index, workdir in enumerate(workdirs):
        config = json.loads((workdir / "config.json").read_text())
        per_step, runs = _seconds_per_step(workdir)
        folder = Path(tmp) / str(index)  # segments share checkpoint names (ckpt-300)
        folder.mkdir()
        for step, model in _segment_models(workdir, config, folder).items():
            models.setdefault(offset + step, (model, wall + step * per_step, index))
        segments.append(
            {"workdir": str(workdir), "seconds_per_step": per_step, "runs": runs, "config": config}
        )
        offset, wall = offset + runs[-1]["to_step"], wall + runs[-1]["to_step"] * per_step
    points = []
    for step, (model, wall_s, index) in sorted(models.items()):
        figures = _measure(str(model), photos, painting, extractor)
        points.append({"step": step, "wall_s": round(wall_s, 1), "segment": index, **figures})
        print(style, points[-1], flush=True)
    return {"segments": segments, "points": points}


def _by_segment(style, entry):
    """The plot's input: one line per segment, each starting where the one before ended."""
    lines = {}
    for index, segment in enumerate(entry["segments"]):
        schedule = segment["config"].get("lr_schedule", "constant")  # older work dirs: constant
        label = f"{style}, {Path(segment['workdir']).name}: {schedule} rate"
        first = max(p["step"] for p in entry["points"] if p["segment"] < index) if index else 0
        lines[label] = {
            "points": [p for p in entry["points"] if p["segment"] == index or p["step"] == first]
        }
    return {"styles": lines, "extras": []}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run",
        action="append",
        required=True,
        help="STYLE=WORKDIR of the training run; repeat for a run continued in another work "
        "dir (--init_from its last checkpoint), in order",
    )
    parser.add_argument("--start", required=True, help="network at step 0 (style name or .keras)")
    parser.add_argument("--photos_dir", default=str(SHARED / "data" / "eval_photos"))
    parser.add_argument("--num_photos", type=int, default=0, help="every k-th photo; 0 = all")
    parser.add_argument(
        "--vgg_weights", default=str(SHARED / "weights" / "vgg16_hed_notop_fp16.weights.h5")
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--plot")
    args = parser.parse_args()
    specs = [spec.partition("=") for spec in args.run]
    if any(not workdir for _, _, workdir in specs) or len({s for s, _, _ in specs}) != 1:
        parser.error("--run must be STYLE=WORKDIR, one style for all segments")
    style, workdirs = specs[0][0], [Path(workdir) for _, _, workdir in specs]

    from keras_style.core import images, losses
    from keras_style.slow import cache

    files = images.list_image_files(args.photos_dir)
    if args.num_photos:
        files = files[:: max(1, len(files) // args.num_photos)][: args.num_photos]
    photos = {Path(f).stem: str(f) for f in files}
    extractor = cache.get_extractor(losses.LossConfig().layers, "vgg16", args.vgg_weights)
    with tempfile.TemporaryDirectory() as tmp:
        entry = run_points(style, workdirs, args.start, photos, extractor, tmp)
    report = {
        "environment": environment(),
        "photos_dir": args.photos_dir,
        "num_photos": len(photos),
        "targets": TARGETS,
        "styles": {style: entry},
        "extras": [],
    }
    write_json(report, args.out)
    if args.plot:
        plot(_by_segment(style, entry), args.plot, title=f"{style}: quality along a long run")


if __name__ == "__main__":
    main()
