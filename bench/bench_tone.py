"""Do fast networks keep the photo's light and dark? Tone figures of networks on held-out photos.

Each photo is stylized whole (`FastStylizer`), then photo and output are resized to a
--size long side and reduced to their `losses.tone_map` (mean luminance of --block x --block
pixel blocks). Per network it prints and writes the means over the photos of:

- tone_error: relative error of the output's tone map against the photo's (the tone
  term of the loss; 0 = same light and dark, 1 = as far as a black picture);
- tone_correlation: Pearson correlation of the two tone maps (about 1 = light stays
  light, negative = a photo negative).

    python bench/bench_tone.py --model old=great_wave --model new=runs/x/model.keras \\
        --num_photos 16 --out docs/bundled_styles/tone.json
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import environment, write_json  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def tone_figures(stylizer, files, size, block):
    from keras import ops

    from keras_style.core import images, losses

    errors, correlations = [], []
    for path in files:
        photo = images.load_image(path)
        output = np.asarray(stylizer.stylize(photo))
        shape = images.fit_size(photo.shape, long_side=size)
        tones = [
            ops.convert_to_numpy(losses.tone_map(images.resize(x, shape)[None], block))
            for x in (photo, output)
        ]
        errors.append(float(ops.convert_to_numpy(losses.relative_error(tones[1], tones[0]))[0]))
        correlations.append(float(np.corrcoef(tones[0].ravel(), tones[1].ravel())[0, 1]))
    return {
        "tone_error": float(np.mean(errors)),
        "tone_correlation": float(np.mean(correlations)),
        "negative_correlation_photos": int(np.sum(np.array(correlations) < 0)),
        "per_photo": {
            Path(f).stem: [e, c] for f, e, c in zip(files, errors, correlations, strict=True)
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="NAME=STYLE_OR_PATH")
    parser.add_argument("--photos_dir", default=str(SHARED / "data" / "eval_photos"))
    parser.add_argument("--num_photos", type=int, default=0, help="evenly spread; 0: all")
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--block", type=int, default=16)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from keras_style.core import images
    from keras_style.fast.stylizer import FastStylizer

    files = images.list_image_files(args.photos_dir)
    if args.num_photos:
        files = files[:: max(1, len(files) // args.num_photos)][: args.num_photos]
    report = {"environment": environment(), "photos": [Path(f).stem for f in files]}
    report.update(size=args.size, block=args.block, models={})
    for spec in args.model:
        name, _, source = spec.partition("=")
        figures = tone_figures(FastStylizer(source), files, args.size, args.block)
        report["models"][name] = {"source": source, **figures}
        print(
            f"{name}: tone error {figures['tone_error']:.3f}, correlation "
            f"{figures['tone_correlation']:.3f}, negative on "
            f"{figures['negative_correlation_photos']}/{len(files)} photos",
            flush=True,
        )
    write_json(report, args.out)


if __name__ == "__main__":
    main()
