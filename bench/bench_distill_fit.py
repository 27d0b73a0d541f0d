"""Underfitting or not generalising? SSIM to the slow output on training and held-out pairs.

    python bench/bench_distill_fit.py --train_dir runs/r17/work/pairs \
        --heldout_dir runs/r17/work/heldout \
        --model distilled@400=runs/r17/work/distilled/checkpoints/ckpt-400 \
        --model perceptual=runs/r17/work/perceptual/model.keras \
        --out docs/distillation/fit.json

A distilled network that scores no better on the pairs it trained on than on
held-out pairs, and no better than the unchanged photo, is not limited by
its data (it has not fitted even those): it needs more steps or a better
optimisation, not more photos. Each `--model` is NAME=PATH, PATH a `.keras`
file or a checkpoint folder of a training work dir (`<workdir>/checkpoints/
ckpt-N`, rebuilt from the work dir's `config.json`). Prints and writes, per
split, the mean SSIM and PSNR to the slow outputs of the photo and of each
network (`keras_style.quality.evaluate.closeness`, the figures of the
held-out evaluation).
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench_report import environment, write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _model_path(path, folder):
    """`path` if it is a .keras file; a checkpoint folder saved as one in `folder`.

    `folder` must be the model's own: checkpoints of different runs share names
    (`ckpt-400`), and one folder would hold only the last of them.
    """
    path = Path(path)
    if path.suffix == ".keras":
        return str(path)
    from bench_refine_quality import _model_file

    config = json.loads((path.parents[1] / "config.json").read_text())
    Path(folder).mkdir(parents=True)
    return str(_model_file(path, config, folder))


def _split(directory, models):
    from keras_style.distill import dataset as stylized_dataset
    from keras_style.quality import evaluate

    ids, photos, slow = stylized_dataset.load_pairs(directory)
    row = {"pairs": len(ids)}
    for name, images in {"photo": photos, **{n: None for n in models}}.items():
        images = evaluate.run_model(models[name], photos) if images is None else images
        close = evaluate.closeness(images, slow)
        row[name] = {"ssim": float(close["ssim"].mean()), "psnr": float(close["psnr"].mean())}
        print(f"{Path(directory).name:<10} {name:<16} SSIM {row[name]['ssim']:.3f}", flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_dir", required=True, help="the training stylized dataset")
    parser.add_argument("--heldout_dir", required=True, help="a held-out one, same recipe")
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    pairs = [spec.partition("=") for spec in args.model]
    if any(not name or not path for name, _, path in pairs):
        parser.error("--model takes NAME=PATH")
    report = {"environment": environment()}
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            name: _model_path(path, Path(tmp) / str(i)) for i, (name, _, path) in enumerate(pairs)
        }
        report["train"] = _split(args.train_dir, models)
        report["heldout"] = _split(args.heldout_dir, models)
    report["models"] = {name: path for name, _, path in pairs}
    write_json(report, args.out)


if __name__ == "__main__":
    main()
