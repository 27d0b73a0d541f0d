"""Three recipes for a fast network at the same CPU budget, generation counted (issue 17).

    python bench/bench_distill_recipes.py --work runs/recipes --budget_cpu_h 0.75 \
        --photos runs/recipes_photos --heldout_photos runs/heldout_photos \
        --out docs/distillation/recipes.json --plot docs/distillation/recipes.png \
        [--slow_dir runs/slow/starry_night --sheet docs/distillation/recipes_sheet.jpg]

Phases (each skipped when its output is already there, so a killed run
continues where it stopped):

1. **generate**: `training.make_stylized_dataset --config configs/recipe_slow_256.json`
   on `--photos` (the training photos of all three recipes): the slow
   method's targets, 4 photos per L-BFGS run, bfloat16 where the CPU is fast
   at it. Its CPU time is charged to the distilled and the hybrid recipe.
2. **train**: `training.train --config configs/recipe_perceptual_256.json`,
   `training.distill --config configs/recipe_distill_256.json` and
   `--config configs/recipe_hybrid_256.json`, all from scratch on the same
   photos. Each first trains `--probe_steps`, which measures its CPU seconds
   per step, then resumes up to the step count that spends what is left of
   `--budget_cpu_h` (for the two distilled recipes: after the generation).
   Rerunning with a larger budget resumes every recipe from its last
   checkpoint for the extra CPU time; `--recipes` picks the recipes (e.g. a
   variant such as `hybrid_p30`, trained on the same dataset and added to the
   report without retraining the others).
3. **measure**: every checkpoint (a point on the curve, charged its share of
   the training's CPU time) stylizes `--eval_photos` whole, at full
   resolution, and is measured at a 384 px long side against the painting and
   the photo (`style_report.full_resolution_figures`, as the bundled-style
   report); the final networks also against the slow method on a held-out
   stylized dataset of `--heldout_photos` (SSIM to the slow output,
   `evaluate.evaluate_on_dataset`), beside the slow method's own re-run SSIM
   (`bench/bench_slow_reproducibility.py` on the same dataset).

CPU time is the children's user + system time (`resource.getrusage`), so it
counts both cores and is not inflated by other jobs waiting for the CPU; wall
time is recorded too. Writes `--out` (JSON) and `--plot` (style and content
distance against CPU-hours, one line per recipe) and `--sheet` (photo | slow
method | perceptual | distilled | hybrid at the photos' full resolution).
"""

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_report import environment, write_json

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

RECIPES = {
    "perceptual": ("training.train", "configs/recipe_perceptual_256.json"),
    "distilled": ("training.distill", "configs/recipe_distill_256.json"),
    "hybrid": ("training.distill", "configs/recipe_hybrid_256.json"),
    "hybrid_p30": ("training.distill", "configs/recipe_hybrid_p30_256.json"),
    "distilled_noflip": ("training.distill", "configs/recipe_distill_noflip_256.json"),
    "distilled_ssim": ("training.distill", "configs/recipe_distill_ssim_256.json"),
}
DEFAULT_RECIPES = "perceptual,distilled,hybrid"
SLOW_CONFIG = "configs/recipe_slow_256.json"


def _timed(command, log):
    """Runs `command`, appending its output to `log`; returns (CPU s, wall s) it took."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, time.perf_counter() - start


def _state(work):
    path = work / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_state(work, state):
    write_json(state, work / "state.json")


def _generate(args, state, name, photos):
    """Builds the stylized dataset `work/name` of `photos` once; returns its cost entry."""
    if name in state:
        return state[name]
    command = [
        sys.executable, "-m", "training.make_stylized_dataset", f"--config={SLOW_CONFIG}",
        f"--style={args.style}", f"--vgg_weights={args.vgg_weights}",
        f"--image_dir={photos}", f"--output_dir={args.work / name}",
        f"--iterations={args.iterations}",
    ]  # fmt: skip
    cpu, wall = _timed(command, args.work / f"{name}.log")
    count = len(list(Path(photos).iterdir()))
    state[name] = {"command": " ".join(command[1:]), "cpu_s": cpu, "wall_s": wall, "photos": count}
    return state[name]


def _train_command(args, recipe, steps):
    module, config = RECIPES[recipe]
    command = [
        sys.executable, "-m", module, f"--config={config}", f"--steps={steps}",
        f"--vgg_weights={args.vgg_weights}", f"--workdir={args.work / recipe}",
    ]  # fmt: skip
    if module == "training.train":
        return [*command, f"--image_dir={args.photos}", f"--style_image={args.style}"]
    return [*command, f"--dataset_dir={args.work / 'pairs'}"]


def _leg(args, state, recipe, steps):
    """Trains (or resumes) `recipe` up to `steps`, recording the leg's CPU and wall time."""
    entry = state.setdefault(recipe, {"legs": []})
    command = _train_command(args, recipe, steps)
    cpu, wall = _timed(command, args.work / f"{recipe}.log")
    entry["legs"].append({"to_step": steps, "cpu_s": cpu, "wall_s": wall})
    entry["command"] = " ".join(command[1:])
    _save_state(args.work, state)


def _train(args, state, recipe, budget_s):
    """Trains `recipe` for `budget_s` CPU seconds; returns its training entry.

    The first leg (`--probe_steps`) measures the CPU seconds per step; the next
    one resumes to the step count that spends the rest of the budget. A later
    call with a larger budget adds a leg from the last checkpoint (the cost
    per step then comes from every leg so far), so a budget can grow without
    retraining.
    """
    entry = state.setdefault(recipe, {"legs": []})
    if not entry["legs"]:
        _leg(args, state, recipe, args.probe_steps)
    if entry.get("budget_s", 0.0) < budget_s:
        legs = entry["legs"]
        per_step = sum(leg["cpu_s"] for leg in legs) / legs[-1]["to_step"]
        steps = int(budget_s / per_step) // 50 * 50
        if steps > legs[-1]["to_step"]:
            _leg(args, state, recipe, steps)
        entry["budget_s"] = budget_s
        _save_state(args.work, state)
    return entry


def _cpu_at(entry, step):
    """CPU seconds the training had spent at `step` (linear within a leg)."""
    spent, start = 0.0, 0
    for leg in entry["legs"]:
        if step <= leg["to_step"]:
            return spent + leg["cpu_s"] * (step - start) / (leg["to_step"] - start)
        spent, start = spent + leg["cpu_s"], leg["to_step"]
    raise ValueError(f"step {step} is after the run's end ({start})")


def _checkpoints(workdir):
    found = {}
    for folder in (workdir / "checkpoints").glob("ckpt-*"):
        match = re.fullmatch(r"ckpt-(\d+)", folder.name)
        if match and (folder / "net.weights.h5").is_file():
            found[int(match.group(1))] = folder
    return found


def _curve(args, recipe, entry, offset_s, photos, painting, extractor, measured):
    """Full-resolution distances of every `--every`-th checkpoint against CPU-hours."""
    from bench_refine_quality import _measure, _model_file

    workdir = args.work / recipe
    config = json.loads((workdir / "config.json").read_text())
    final = entry["legs"][-1]["to_step"]
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for step, folder in sorted(_checkpoints(workdir).items()):
            if step % args.every and step != final:
                continue
            key = f"{recipe}/{step}"
            if key not in measured:
                model = _model_file(folder, config, tmp) if step != final else None
                model = model or workdir / "model.keras"
                measured[key] = _measure(str(model), photos, painting, extractor)
                print(recipe, step, measured[key], flush=True)
                _save_state(args.work, {**_state(args.work), "measured": measured})
            cpu_h = (offset_s + _cpu_at(entry, step)) / 3600
            points.append({"step": step, "cpu_h": round(cpu_h, 4), **measured[key]})
    return points


def _final_step(state, recipe):
    return state[recipe]["legs"][-1]["to_step"]


def _against_slow(args, state, recipes):
    """SSIM / distances of the final networks to the slow method on the held-out pairs.

    Each network is measured once per final step (kept in the work dir's state), so
    adding a recipe or growing a budget re-measures only what changed.
    """
    from keras_style.quality import evaluate

    done = state.setdefault("against_slow", {"methods": {}})
    measured = [r for r in done["methods"] if r in RECIPES]
    steps = done.setdefault("final_steps", {r: _final_step(state, r) for r in measured})
    todo = [r for r in recipes if steps.get(r) != _final_step(state, r)]
    if todo:
        models = {r: str(args.work / r / "model.keras") for r in recipes}
        report, columns = evaluate.evaluate_on_dataset(
            args.work / "heldout", models, args.vgg_weights, train_dirs=[args.work / "pairs"]
        )
        from keras_style.core import images

        sheet = evaluate.contact_sheet(columns, max_rows=6)
        images.save_image(sheet, args.work / "heldout_sheet.png")
        done["methods"].update(report["methods"])
        done["num_images"] = report["num_images"]
        steps.update({r: _final_step(state, r) for r in recipes})
        _save_state(args.work, state)
    if "slow_rerun" not in state:
        out = args.work / "slow_rerun.json"
        command = [
            sys.executable, "bench/bench_slow_reproducibility.py",
            f"--dataset_dir={args.work / 'heldout'}", f"--max_photos={args.rerun_photos}",
            f"--out={out}",
        ]  # fmt: skip
        _timed(command, args.work / "slow_rerun.log")
        state["slow_rerun"] = json.loads(out.read_text())
    methods = {k: v for k, v in done["methods"].items() if k in ("photo", "slow", *recipes)}
    return {"methods": methods, "num_images": done["num_images"]}, state["slow_rerun"]


def contact_sheet(args, path):
    """Full-resolution rows: photo | slow method (when in --slow_dir) | one column per recipe."""
    from keras_style.core import images
    from keras_style.fast.stylizer import FastStylizer
    from keras_style.quality import style_report

    stylizers = {r: FastStylizer(str(args.work / r / "model.keras")) for r in args.reported}
    rows = []
    for name in args.sheet_photos.split(","):
        photo = images.load_image(Path(args.eval_photos) / f"{name}.jpg")
        row = [(f"photo {name}", photo)]
        slow = Path(args.slow_dir or "") / f"{name}.png"
        if args.slow_dir and slow.is_file():
            row.append(("slow method (package default)", images.load_image(slow)))
        row += [(recipe, stylizer.stylize(photo)) for recipe, stylizer in stylizers.items()]
        rows.append(row)
    images.save_image(style_report.row_sheet(rows), path)


def plot(report, path):
    """Style and content distance against CPU-hours: one line per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), dpi=100, layout="constrained")
    axes = figure.subplots(1, 2)
    generation_h = report["generation"]["cpu_s"] / 3600
    for ax, key in zip(axes, ("style_distance", "content_distance"), strict=True):
        for recipe, entry in report["recipes"].items():
            xs = [p["cpu_h"] for p in entry["points"]]
            ax.plot(xs, [p[key] for p in entry["points"]], marker="o", label=recipe)
        ax.axvline(generation_h, color="grey", linestyle=":", linewidth=1)
        ax.axvline(report["budget_cpu_h"], color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("CPU-hours, slow-method generation included (dotted: generation done)")
        ax.set_ylabel(key.replace("_", " ") + " (held-out photos, full resolution)")
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("Perceptual, distilled and hybrid recipes at the same CPU budget")
    figure.savefig(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--photos", required=True, help="training photos of all three recipes")
    parser.add_argument("--eval_photos", default=str(SHARED / "data" / "eval_photos"))
    parser.add_argument("--heldout_photos", required=True, help="photos of the held-out pairs")
    parser.add_argument("--style", default=str(SHARED / "data" / "styles" / "starry_night.jpg"))
    parser.add_argument(
        "--vgg_weights", default=str(SHARED / "weights" / "vgg16_hed_notop_fp16.weights.h5")
    )
    parser.add_argument("--budget_cpu_h", type=float, default=0.75)
    parser.add_argument(
        "--recipes",
        default=DEFAULT_RECIPES,
        help=f"recipes trained to --budget_cpu_h, comma-separated, of {', '.join(RECIPES)}; the "
        "report shows every recipe trained in --work, each at its own budget",
    )
    parser.add_argument("--iterations", type=int, default=60, help="slow-method L-BFGS iterations")
    parser.add_argument("--probe_steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=100, help="checkpoints measured")
    parser.add_argument("--rerun_photos", type=int, default=4)
    parser.add_argument("--slow_dir", help="slow-method outputs <slow_dir>/<photo>.png (sheet)")
    parser.add_argument("--sheet_photos", default="n01496331_electric_ray,n03877472_pajama")
    parser.add_argument("--sheet", help="full-resolution contact sheet to write")
    parser.add_argument("--out", required=True)
    parser.add_argument("--plot")
    args = parser.parse_args()
    args.recipes = args.recipes.split(",")
    unknown = sorted(set(args.recipes) - set(RECIPES))
    if unknown:
        parser.error(f"unknown recipes {unknown}; known: {', '.join(RECIPES)}")
    args.work.mkdir(parents=True, exist_ok=True)

    state = _state(args.work)
    generation = _generate(args, state, "pairs", args.photos)
    _save_state(args.work, state)
    budget = args.budget_cpu_h * 3600
    for recipe in args.recipes:
        spent = 0.0 if recipe == "perceptual" else generation["cpu_s"]
        _train(args, state, recipe, budget - spent)
    heldout = _generate(args, state, "heldout", args.heldout_photos)
    _save_state(args.work, state)

    from keras_style.core import images, losses
    from keras_style.slow import cache

    photos = {Path(f).stem: str(f) for f in images.list_image_files(args.eval_photos)}
    extractor = cache.get_extractor(losses.LossConfig().layers, "vgg16", args.vgg_weights)
    painting = images.load_image(args.style)
    measured = state.setdefault("measured", {})
    report = {
        "command": "python bench/bench_distill_recipes.py " + " ".join(sys.argv[1:]),
        "environment": environment(),
        "budget_cpu_h": args.budget_cpu_h,
        "generation": {**generation, "cpu_s_per_photo": generation["cpu_s"] / generation["photos"]},
        "heldout_generation": heldout,
        "eval_photos": sorted(photos),
        "recipes": {},
    }
    # Every recipe trained in this work dir is reported, each with the budget it was given.
    args.reported = [r for r in RECIPES if state.get(r, {}).get("legs")]
    for recipe in args.reported:
        entry = state[recipe]
        offset = 0.0 if recipe == "perceptual" else generation["cpu_s"]
        points = _curve(args, recipe, entry, offset, photos, painting, extractor, measured)
        report["recipes"][recipe] = {**entry, "points": points}
    _save_state(args.work, state)
    report["against_slow"], report["slow_rerun"] = _against_slow(args, state, args.reported)
    _save_state(args.work, state)
    write_json(report, args.out)
    if args.plot:
        plot(report, args.plot)
    if args.sheet:
        contact_sheet(args, args.sheet)


if __name__ == "__main__":
    main()
