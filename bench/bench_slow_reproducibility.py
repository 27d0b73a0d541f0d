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
    for name, (run_recipe, inputs, order, mirrored) in runs.items():
        start = time.perf_counter()
        out = _restylize(run_recipe, inputs, order)
        out = out[:, :, ::-1] if mirrored else out
        report[name] = _figures(out, slow, time.perf_counter() - start)
        print(f"{name:<32} {report[name]['ssim']:6.3f} {report[name]['psnr']:6.2f}", flush=True)
    if _OUT.value:
        Path(_OUT.value).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    app.run(main)
