"""How closely does the slow method reproduce its own outputs? The ceiling of any imitation.

    python bench/bench_slow_reproducibility.py --dataset_dir datasets/heldout_128 \
        [--max_photos 8] [--out slow_reproducibility.json]

Re-stylizes the photos of a stylized dataset with the recipe on its card
(`SlowRecipe.from_json`, `PairGenerator`: the generator that wrote it) in four
ways and prints SSIM and PSNR of each re-run to the stored slow outputs, next
to the unchanged photo's: the same batches, other batches of the same size,
one photo per run, and the mirrored photo (mirrored back). A distilled
network is measured against the stored outputs, so it cannot be expected to
come closer to them than the slow method itself does.

With `--dithered_runs K` it also re-runs the same batches K times from the
photo plus uniform noise of at most half a level (the rounding that already
separates the first row from the stored run), and scores the pixel mean of
those K outputs: an estimate of the slow method's expected output for the
photo, which is what a network trained with a pixel loss converges to, so
its SSIM estimates the ceiling of such an imitation (the mean of K samples
still holds 1/K of their disagreement, so it slightly underestimates it).

With `--shifts 4,8,16` it also re-runs the same batches on the photos with
their left K columns cut off and compares the outputs with the stored ones
on the same columns, beside the unchanged photo on those columns. The
content moves K pixels against VGG's pooling grid (16 pixels): if the
strokes stay where they were only for K = 16, their placement is tied to
the grid, which a convolutional network (the same at every position) cannot
see away from the borders, so no such network can reproduce it.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_DATASET = flags.DEFINE_string("dataset_dir", None, "A stylized dataset folder.", required=True)
_MAX = flags.DEFINE_integer("max_photos", 8, "Photos re-stylized (the first ones).")
_OUT = flags.DEFINE_string("out", None, "Also write the figures to this JSON file.")
_DITHERED = flags.DEFINE_integer(
    "dithered_runs", 0, "Re-runs from the photo plus half-level noise whose mean is scored."
)
_FOUR = flags.DEFINE_bool(
    "four_reruns", True, "The four re-runs (same/other batches, one per run, mirrored)."
)
_SHIFTS = flags.DEFINE_list(
    "shifts", [], "Re-runs on the photos with this many left columns cut off (e.g. 4,8,16)."
)


def _restylize(recipe, photos, order):
    """The slow method on `photos`, batched in `order`, rounded to 8 bits like the dataset."""
    from keras_style.distill.generator import PairGenerator

    generator = PairGenerator(recipe)
    out = np.zeros_like(photos)
    for start in range(0, len(photos), recipe.batch_size):
        index = order[start : start + recipe.batch_size]
        out[index] = generator.stylize(photos[index])
    return np.clip(np.round(out), 0.0, 255.0)


def _figures(candidates, slow, seconds=None):
    from keras_style.quality import evaluate

    close = evaluate.closeness(candidates, slow)
    row = {"ssim": float(close["ssim"].mean()), "psnr": float(close["psnr"].mean())}
    row["per_photo_ssim"] = [round(float(v), 4) for v in close["ssim"]]
    if seconds is not None:
        row["seconds"] = round(seconds, 1)
    return row


def _dithered(recipe, photos, slow, order, runs):
    """Figures of `runs` re-runs from half-level-dithered photos, and of their pixel mean."""
    outputs, seconds = [], []
    for seed in range(runs):
        noise = np.random.default_rng(seed).uniform(-0.5, 0.5, photos.shape).astype(photos.dtype)
        start = time.perf_counter()
        outputs.append(_restylize(recipe, np.clip(photos + noise, 0.0, 255.0), order))
        seconds.append(time.perf_counter() - start)
    each = [_figures(out, slow) for out in outputs]
    rows = {
        "dithered photo (each run)": {
            "ssim": float(np.mean([row["ssim"] for row in each])),
            "psnr": float(np.mean([row["psnr"] for row in each])),
            "runs": runs,
            "seconds": round(float(np.mean(seconds)), 1),
        },
        f"mean of {runs} dithered re-runs": _figures(np.mean(outputs, axis=0), slow),
    }
    for name, row in rows.items():
        print(f"{name:<32} {row['ssim']:6.3f} {row['psnr']:6.2f}", flush=True)
    return rows


def _shifted(recipe, photos, slow, order, shifts):
    """Figures of re-runs with the left K columns cut, on those columns, per K in `shifts`."""
    rows = {}
    for shift in shifts:
        start = time.perf_counter()
        out = _restylize(recipe, np.ascontiguousarray(photos[:, :, shift:]), order)
        seconds = time.perf_counter() - start
        rows[f"left {shift} columns cut"] = {
            **_figures(out, slow[:, :, shift:], seconds),
            "unchanged photo": _figures(photos[:, :, shift:], slow[:, :, shift:]),
        }
    for name, row in rows.items():
        photo = row["unchanged photo"]["ssim"]
        print(f"{name:<32} {row['ssim']:6.3f} {row['psnr']:6.2f}  photo {photo:.3f}", flush=True)
    return rows


def main(argv):
    del argv
    from keras_style.distill import dataset as stylized_dataset
    from keras_style.distill.recipe import SlowRecipe

    card = stylized_dataset.read_card(_DATASET.value)
    _, photos, slow = stylized_dataset.load_pairs(_DATASET.value)
    photos, slow = photos[: _MAX.value], slow[: _MAX.value]
    n = len(photos)
    recipe = SlowRecipe.from_json(card["recipe"])
    single = SlowRecipe.from_json({**card["recipe"], "batch_size": 1})
    in_order, shifted = list(range(n)), [*range(1, n), 0]
    runs = {
        "same batches": (recipe, photos, in_order, False),
        "other batches": (recipe, photos, shifted, False),
        "one photo per run": (single, photos, in_order, False),
        "mirrored photo, mirrored back": (recipe, photos[:, :, ::-1].copy(), in_order, True),
    }
    report = {"dataset": stylized_dataset.card_summary(card), "photos": n}
    report["unchanged photo"] = _figures(photos, slow)
    print(f"{'re-run':<32} {'SSIM':>6} {'PSNR':>6}")
    print(
        f"{'unchanged photo':<32} {report['unchanged photo']['ssim']:6.3f} "
        f"{report['unchanged photo']['psnr']:6.2f}"
    )
    for name, (run_recipe, inputs, order, mirrored) in runs.items() if _FOUR.value else ():
        start = time.perf_counter()
        out = _restylize(run_recipe, inputs, order)
        out = out[:, :, ::-1] if mirrored else out
        report[name] = _figures(out, slow, time.perf_counter() - start)
        print(f"{name:<32} {report[name]['ssim']:6.3f} {report[name]['psnr']:6.2f}", flush=True)
    if _DITHERED.value:
        report.update(_dithered(recipe, photos, slow, in_order, _DITHERED.value))
    if _SHIFTS.value:
        shifts = [int(k) for k in _SHIFTS.value]
        report.update(_shifted(recipe, photos, slow, in_order, shifts))
    if _OUT.value:
        Path(_OUT.value).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    app.run(main)
