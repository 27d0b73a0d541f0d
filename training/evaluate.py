"""Measures fast networks against the slow method on held-out photos.

Reads a held-out stylized dataset (made by training.make_stylized_dataset with
the training recipe, on photos left out of training), runs each model on its
photos and writes evaluation.json (PSNR/SSIM to the slow output, Gram-style
and content distances, target checks) and contact_sheet.png
(photo | slow | one column per model).

    python -m training.evaluate --eval_dataset datasets/heldout_128 \\
        --train_dataset datasets/train_128 \\
        --model distilled=runs/distill/model.keras \\
        --model perceptual=runs/perceptual/model.keras --out_dir runs/eval
"""

import json
from pathlib import Path

from absl import app, flags

from training import binary

FLAGS = flags.FLAGS

flags.DEFINE_string("eval_dataset", None, "Held-out stylized dataset folder.")
flags.DEFINE_multi_string("model", None, "NAME=PATH of a trained .keras network (repeatable).")
flags.DEFINE_multi_string(
    "train_dataset", [], "Training dataset(s): evaluation photos must not be in them."
)
flags.DEFINE_string("vgg_weights", None, "Override the VGG weights path of the dataset card.")
flags.DEFINE_string("out_dir", None, "Folder for evaluation.json and contact_sheet.png.")
flags.DEFINE_integer("max_rows", 8, "Photos shown in the contact sheet.")


def run():
    from keras_style.core import images as image_lib
    from keras_style.core import jsonio
    from keras_style.quality import evaluate

    if not FLAGS.eval_dataset or not FLAGS.out_dir:
        raise ValueError("--eval_dataset and --out_dir are required")
    report, columns = evaluate.evaluate_on_dataset(
        FLAGS.eval_dataset,
        binary.parse_models(FLAGS.model),
        vgg_weights=FLAGS.vgg_weights,
        train_dirs=FLAGS.train_dataset,
    )
    out = Path(FLAGS.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jsonio.write_json(out / "evaluation.json", report)
    sheet = evaluate.contact_sheet(columns, max_rows=FLAGS.max_rows)
    image_lib.save_image(sheet, out / "contact_sheet.png")
    for name, values in report["methods"].items():
        print(name, json.dumps(values))
    for name, target in report["targets"].items():
        print(f"{name}: targets {json.dumps(target)}")


def main(argv):
    binary.run_cleanly(argv, run)


if __name__ == "__main__":
    app.run(main)
