"""How close is "close enough": fast-network outputs against the slow method's, per photo.

Two kinds of figures, on held-out photos that neither network trained on:

* closeness to the slow output (the distillation target): PSNR and SSIM
  (`keras_style.core.metrics`);
* what the slow method itself optimises, measured with the same frozen VGG
  and the same scale-free terms as `keras_style.core.losses`: the Gram-style
  distance to the painting and the content distance to the photo. A fast
  output that is as stylized as the slow one has a style distance ratio of
  about 1 to the slow output's.

`contact_sheet` lays the images out as rows of photo | slow | fast outputs.
"""

import numpy as np
from keras import ops
from PIL import Image, ImageDraw

from keras_style.core import images as image_lib
from keras_style.core import jsonio, losses, metrics

#: Default acceptance targets on held-out photos.
TARGET_MIN_SSIM = 0.70
TARGET_MAX_STYLE_RATIO = 1.5


class Evaluator:
    """Style and content distances of images, measured like the slow method's loss.

    Args:
        extractor: a `vgg.FeatureExtractor` exposing the loss config's layers.
        styles: the painting(s), [0, 255] RGB (H, W, 3) arrays.
        loss_config: a `losses.LossConfig` (its layers and layer weights are
            used; the term weights are not).
        style_weights: blend weights of `styles` (None: equal).
        style_scale: painting long side relative to the evaluated image's,
            as in `optimize.OptimizeConfig.style_scale`.
    """

    def __init__(self, extractor, styles, loss_config=None, style_weights=None, style_scale=1.0):
        self.loss = losses.PerceptualLoss(extractor, loss_config)
        self.styles, self.style_weights, self.style_scale = styles, style_weights, style_scale
        self._gram_cache = {}

    def _style_targets(self, long_side):
        side = max(16, round(long_side * self.style_scale))
        if side not in self._gram_cache:
            scaled = [
                image_lib.resize(s, image_lib.fit_size(s.shape, long_side=side))
                for s in self.styles
            ]
            self._gram_cache[side] = self.loss.style_targets(scaled, self.style_weights)
        return self._gram_cache[side]

    def distances(self, images, photos):
        """Per-image {"style_distance", "content_distance"} as (N,) numpy arrays.

        Args:
            images: (N, H, W, 3) [0, 255] images to measure.
            photos: (N, H, W, 3) photos they were made from (content reference).
        """
        images = _batch(images)
        photos = _batch(photos)
        if images.shape != photos.shape:
            raise ValueError(f"images {images.shape} and photos {photos.shape} differ in shape")
        style_targets = self._style_targets(max(images.shape[1:3]))
        content_targets = self.loss.content_targets(ops.convert_to_tensor(photos))
        parts = self.loss.parts(ops.convert_to_tensor(images), content_targets, style_targets)
        return {
            "style_distance": ops.convert_to_numpy(parts["style_loss"]).astype(np.float64),
            "content_distance": ops.convert_to_numpy(parts["content_loss"]).astype(np.float64),
        }


def _batch(images):
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(f"Expected (N, H, W, 3) images; got shape {images.shape}")
    return images


def closeness(candidates, references):
    """Per-image PSNR (dB; inf when identical) and SSIM of candidates against references."""
    candidates, references = _batch(candidates), _batch(references)
    if candidates.shape != references.shape:
        raise ValueError(f"Shapes differ: {candidates.shape} vs {references.shape}")
    pairs = list(zip(candidates, references, strict=True))
    return {
        "psnr": np.array([metrics.psnr(c, r) for c, r in pairs]),
        "ssim": np.array([metrics.ssim(c, r) for c, r in pairs]),
    }


def compare(photos, slow, outputs, evaluator, ids=None):
    """Measures every fast output against the slow outputs, the photos and the painting.

    Args:
        photos: (N, S, S, 3) held-out photos.
        slow: (N, S, S, 3) the slow method's outputs for them.
        outputs: {name: (N, S, S, 3)} fast outputs (e.g. "distilled", "perceptual").
        evaluator: an `Evaluator` for the painting.
        ids: optional photo ids for the per-image table.

    Returns:
        A JSON-ready dict: means per method ("photo" and "slow" as references,
        the photo also with its PSNR/SSIM to the slow output; for each output
        `psnr_to_slow`, `ssim_to_slow` and `style_ratio_to_slow`), plus a
        per-image table.
    """
    photos, slow = _batch(photos), _batch(slow)
    ids = list(ids) if ids is not None else [str(i) for i in range(len(photos))]
    slow_d = evaluator.distances(slow, photos)
    # The unchanged photo is the floor any useful output should beat.
    photo_d = {**evaluator.distances(photos, photos), **_to_slow(photos, slow)}
    per_image = {"photo": photo_d, "slow": slow_d}
    for name, images in outputs.items():
        per_image[name] = {**evaluator.distances(images, photos), **_to_slow(images, slow)}
        ratio = per_image[name]["style_distance"] / np.maximum(slow_d["style_distance"], 1e-12)
        per_image[name]["style_ratio_to_slow"] = ratio
    summary = {name: _means(values) for name, values in per_image.items()}
    return {
        "num_images": len(photos),
        "image_size": list(photos.shape[1:3]),
        "methods": summary,
        "per_image": [
            {"id": ids[i], **{m: _at(v, i) for m, v in per_image.items()}}
            for i in range(len(photos))
        ],
    }


def _to_slow(images, slow):
    values = closeness(images, slow)
    return {"psnr_to_slow": values["psnr"], "ssim_to_slow": values["ssim"]}


def _means(values):
    return {k: jsonio.finite(float(np.mean(v))) for k, v in values.items()}


def _at(values, i):
    return {k: jsonio.finite(float(v[i])) for k, v in values.items()}


def check_targets(report, name, min_ssim=TARGET_MIN_SSIM, max_style_ratio=TARGET_MAX_STYLE_RATIO):
    """Whether output `name` meets the targets: SSIM to slow and mean style distance ratio.

    The style criterion compares mean distances (fast mean / slow mean), so a
    few photos where the slow method itself did unusually well do not dominate.
    """
    methods = report["methods"]
    ssim = methods[name]["ssim_to_slow"]
    ratio = methods[name]["style_distance"] / max(methods["slow"]["style_distance"], 1e-12)
    return {
        "ssim_to_slow": ssim,
        "ssim_ok": ssim >= min_ssim,
        "style_ratio_of_means": ratio,
        "style_ok": ratio <= max_style_ratio,
        "min_ssim": min_ssim,
        "max_style_ratio": max_style_ratio,
    }


def contact_sheet(columns, max_rows=None, label_height=18, gap=4):
    """Lays images out as a grid: one row per photo, one labelled column per method.

    Args:
        columns: {label: (N, S, S, 3) [0, 255] images}, in column order; all
            the same shape.
        max_rows: show at most this many rows.
        label_height: pixels of the header row with the column labels.
        gap: white pixels between cells.

    Returns:
        A float32 (H, W, 3) [0, 255] image.
    """
    names = list(columns)
    stacks = [_batch(columns[n]) for n in names]
    if len({s.shape for s in stacks}) != 1:
        raise ValueError(f"Columns differ in shape: {[s.shape for s in stacks]}")
    rows = stacks[0].shape[0] if max_rows is None else min(max_rows, stacks[0].shape[0])
    height, width = stacks[0].shape[1:3]
    sheet = Image.new(
        "RGB",
        (len(names) * (width + gap) + gap, label_height + rows * (height + gap) + gap),
        "white",
    )
    draw = ImageDraw.Draw(sheet)
    for c, (name, stack) in enumerate(zip(names, stacks, strict=True)):
        left = gap + c * (width + gap)
        draw.text((left + 2, 3), name, fill="black")
        for r in range(rows):
            cell = Image.fromarray(image_lib.to_uint8(stack[r]))
            sheet.paste(cell, (left, label_height + gap + r * (height + gap)))
    return np.asarray(sheet, np.float32)


def held_out_check(eval_ids, train_dirs):
    """Raises ValueError if any evaluation photo is also in one of the training datasets."""
    from keras_style.distill import dataset as stylized_dataset

    eval_ids = set(eval_ids)
    for directory in train_dirs:
        ids = {
            e["id"].decode()
            for e in stylized_dataset.load_stylized_dataset(directory).as_numpy_iterator()
        }
        shared = sorted(eval_ids & ids)
        if shared:
            raise ValueError(
                f"{len(shared)} evaluation photos were used in training ({directory}), e.g. "
                f"{shared[0]}: evaluate on held-out photos"
            )


def run_model(model, photos, batch_size=4):
    """Applies a fast network (`keras.Model`, `.keras` path, style name) to (N, S, S, 3) photos."""
    from keras_style.fast import styles

    model = styles.resolve_model(model)
    outputs = [
        model.predict_on_batch(photos[i : i + batch_size])
        for i in range(0, len(photos), batch_size)
    ]
    return np.clip(np.concatenate([ops.convert_to_numpy(o) for o in outputs]), 0.0, 255.0)


def evaluate_on_dataset(eval_dir, models, vgg_weights=None, train_dirs=()):
    """Fast networks against the slow method on a held-out stylized dataset.

    The held-out dataset (written by `stylized_dataset.write_stylized_dataset`
    with the training set's recipe) provides the photos, the slow outputs and,
    through its card, the painting and the loss network to measure with.

    Args:
        eval_dir: the held-out stylized dataset folder.
        models: {name: `keras.Model` or `.keras` path}.
        vgg_weights: overrides the card's VGG weights path (e.g. on another machine).
        train_dirs: training dataset folders that must not share photos with `eval_dir`.

    Returns:
        (report dict, {column name: images} for `contact_sheet`).
    """
    from keras_style.distill import dataset as stylized_dataset
    from keras_style.slow import cache

    card = stylized_dataset.read_card(eval_dir)
    recipe = card["recipe"]
    ids, photos, slow = stylized_dataset.load_pairs(eval_dir)
    held_out_check(ids, train_dirs)
    loss_config = losses.LossConfig(**recipe["loss"])
    weights = vgg_weights or recipe["vgg_weights"]
    extractor = cache.get_extractor(loss_config.layers, recipe["backbone"], weights)
    styles = [image_lib.load_image(f) for f in recipe["style_files"]]
    evaluator = Evaluator(
        extractor, styles, loss_config, recipe["style_weights"], recipe["optimize"]["style_scale"]
    )
    outputs = {name: run_model(model, photos) for name, model in models.items()}
    report = compare(photos, slow, outputs, evaluator, ids)
    report["targets"] = {name: check_targets(report, name) for name in outputs}
    report["dataset_card"] = card
    return report, {"photo": photos, "slow": slow, **outputs}
