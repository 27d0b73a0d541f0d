"""Where the bundled styles' style distance comes from: per VGG layer, at two photo scales.

    python bench/bench_style_layers.py --out docs/bundled_styles/style_layers.json \
        [--styles great_wave,udnie,woman_with_hat_matisse,starry_night] [--num_photos 12]

The bundled-style report's style distance is the mean over `block1..5_conv1` of the
relative Gram error at a 384 px long side, with each held-out photo stylized at its full
resolution. This bench splits it by layer and measures it twice per photo:

- `full_resolution`: as the report does (stylized whole at the photo's own size, then
  output and painting resized to 384 px);
- `stylized_at_384`: the photo first resized to 384 px and stylized there, which puts
  objects at about the pixel size of the 256 px-short-side training photos.

The difference between the two says how much of the distance comes from running the
network on photos larger than it was trained on rather than from what it learnt.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from bench_report import environment, write_json

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

MEASURE_SIDE = 384


def _grams(extractor, image, layers):
    from keras import ops

    from keras_style.core import losses

    features = extractor(ops.convert_to_tensor(image, "float32")[None])
    return {name: losses.gram_matrix(features[name]) for name in layers}


def _per_layer(extractor, image, targets):
    from keras_style.core import losses

    grams = _grams(extractor, image, list(targets))
    return [float(losses.relative_error(grams[k], targets[k])[0]) for k in targets]


def _style(style, files, extractor, layers):
    from keras_style.core import images
    from keras_style.fast.stylizer import FastStylizer

    def fit(image):
        return images.resize(image, images.fit_size(image.shape, long_side=MEASURE_SIDE))

    painting = images.load_image(SHARED / "data" / "styles" / f"{style}.jpg")
    targets = _grams(extractor, fit(painting), layers)
    stylizer = FastStylizer(style)
    rows = {"full_resolution": [], "stylized_at_384": [], "photo": []}
    for path in files:
        photo = images.load_image(path)
        small = fit(photo)
        rows["full_resolution"].append(_per_layer(extractor, fit(stylizer.stylize(photo)), targets))
        rows["stylized_at_384"].append(_per_layer(extractor, stylizer.stylize(small), targets))
        rows["photo"].append(_per_layer(extractor, small, targets))
    out = {}
    for name, values in rows.items():
        mean = np.mean(values, axis=0)
        out[name] = {
            "style_distance": float(mean.mean()),
            "per_layer": {layer: float(v) for layer, v in zip(layers, mean, strict=True)},
        }
    print(style, {k: round(v["style_distance"], 3) for k, v in out.items()}, flush=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--styles", default="great_wave,udnie,woman_with_hat_matisse,starry_night")
    parser.add_argument("--photos", type=Path, default=SHARED / "data" / "eval_photos")
    parser.add_argument("--num_photos", type=int, default=12)
    parser.add_argument(
        "--vgg_weights", default=str(SHARED / "weights" / "vgg16_hed_notop_fp16.weights.h5")
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from keras_style.core import images, losses
    from keras_style.slow import cache

    config = losses.LossConfig()
    layers = list(config.style_layers)
    extractor = cache.get_extractor(config.layers, "vgg16", args.vgg_weights)
    files = images.list_image_files(args.photos)
    files = files[:: max(1, len(files) // args.num_photos)][: args.num_photos]
    report = {
        "command": "python bench/bench_style_layers.py " + " ".join(sys.argv[1:]),
        "environment": environment(),
        "measure_side": MEASURE_SIDE,
        "photos": [Path(f).name for f in files],
        "styles": {s: _style(s, files, extractor, layers) for s in args.styles.split(",")},
    }
    write_json(report, args.out)
    print("written", args.out)


if __name__ == "__main__":
    main()
