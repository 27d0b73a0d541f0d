"""Quality report of the bundled styles: distances on held-out photos and a contact sheet.

For every bundled style, the network stylizes the same square photos, and a
frozen VGG measures, with the slow method's own scale-free terms
(`evaluate.Evaluator`):

* the Gram-style distance of each output to the style's painting, next to
  the same distance for the unstylized photo (how far stylization moved it);
* the content distance of each output to its photo.

The contact sheet has one column per style, headed by its painting, and one
row per photo.
"""

import numpy as np
from PIL import Image, ImageDraw

from keras_style.core import images as image_lib
from keras_style.fast import styles
from keras_style.quality import evaluate


def letterbox(image, size, fill=255.0):
    """Fits a whole (H, W, 3) image into a `size` square, padding with `fill` (white)."""
    fitted = image_lib.resize(image, image_lib.fit_size(image.shape, long_side=size))
    cell = np.full((size, size, 3), fill, np.float32)
    height, width = fitted.shape[:2]
    top, left = (size - height) // 2, (size - width) // 2
    cell[top : top + height, left : left + width] = fitted
    return cell


def _mean(values):
    return float(np.mean(values))


def style_figures(model, photos, painting, extractor):
    """Distances of one style network's outputs on `photos` (N, S, S, 3).

    Returns:
        (figures dict, outputs array): per-photo and mean style distances of
        the outputs and of the photos themselves to `painting`, and the
        content distances of the outputs to the photos.
    """
    outputs = evaluate.run_model(model, photos)
    evaluator = evaluate.Evaluator(extractor, [painting])
    stylized = evaluator.distances(outputs, photos)
    unstylized = evaluator.distances(photos, photos)
    figures = {
        "style_distance": _mean(stylized["style_distance"]),
        "photo_style_distance": _mean(unstylized["style_distance"]),
        "content_distance": _mean(stylized["content_distance"]),
        "per_photo": {
            "style_distance": stylized["style_distance"].tolist(),
            "photo_style_distance": unstylized["style_distance"].tolist(),
            "content_distance": stylized["content_distance"].tolist(),
        },
    }
    return figures, outputs


def bundled_styles_report(photos, paintings, extractor, names=None, assets_dir=None):
    """Runs every bundled style on the photos; returns the report and a contact sheet.

    Args:
        photos: {photo name: (S, S, 3) [0, 255] image}, all the same square size
            (see `images.center_square`); use photos the styles were not trained on.
        paintings: {style name: (H, W, 3) [0, 255] painting}.
        extractor: a `vgg.FeatureExtractor` with the default loss layers.
        names: styles to report (default: all of `styles.list_styles()`).
        assets_dir: where the styles live (default: the package's).

    Returns:
        (report dict, contact sheet as a float32 [0, 255] image).

    Raises:
        ValueError: if no photo is given, or a style has no painting.
    """
    names = list(names or styles.list_styles(assets_dir))
    if not photos:
        raise ValueError("No photos to stylize")
    missing = [n for n in names if n not in paintings]
    if missing:
        raise ValueError(f"No painting given for style(s): {', '.join(missing)}")
    stack = np.stack(list(photos.values())).astype(np.float32)
    size = stack.shape[1]
    report = {"photos": list(photos), "image_size": size, "styles": {}}
    columns = {"photo": np.concatenate([np.full((1, size, size, 3), 255.0), stack])}
    for name in names:
        model = styles.load_style(name, assets_dir)
        figures, outputs = style_figures(model, stack, paintings[name], extractor)
        card = styles.style_card(name, assets_dir)
        figures["width"], figures["painting"] = card["width"], card.get("painting")
        report["styles"][name] = figures
        header = letterbox(paintings[name], size)[None]
        columns[name] = np.concatenate([header, outputs])
    return report, evaluate.contact_sheet(columns)


def markdown_table(report):
    """The report's per-style means as a Markdown table."""
    lines = [
        "| style | width | style distance (photo -> stylized) | content distance |",
        "|---|---|---|---|",
    ]
    for name, f in report["styles"].items():
        lines.append(
            f"| {name} | {f['width']} | {f['photo_style_distance']:.4f} -> "
            f"{f['style_distance']:.4f} | {f['content_distance']:.3f} |"
        )
    return "\n".join(lines)


def measured(image, side):
    """`image` resized so that its long side is `side` (where distances are measured)."""
    return image_lib.resize(image, image_lib.fit_size(image.shape, long_side=side))


def full_resolution_figures(stylizer, photos, painting, extractor, measure_side=384, keep=()):
    """Distances of a fast network's outputs made at each photo's full resolution.

    A user stylizes a photo at its own size, where a network trained on small
    crops can look different from the crops (strokes too small, embossing),
    so each photo is stylized whole through `stylizer` (the `FastStylizer`
    users call), and only then are output and photo resized to a
    `measure_side` long side and measured against the painting resized alike
    (the slow method's scale-free terms, `evaluate.Evaluator`).

    Args:
        stylizer: a `FastStylizer`.
        photos: {photo name: path or (H, W, 3) [0, 255] image}, any sizes.
        painting: (H, W, 3) [0, 255] painting.
        extractor: a `vgg.FeatureExtractor` with the default loss layers.
        measure_side: long side at which distances are measured.
        keep: names of photos whose full-resolution outputs are returned.

    Returns:
        (figures dict as in `style_figures`, {kept photo name: output}).
    """
    evaluator = evaluate.Evaluator(extractor, [painting])
    keys = ("style_distance", "photo_style_distance", "content_distance")
    per_photo = {key: [] for key in keys}
    kept = {}
    for name, source in photos.items():
        photo = image_lib.load_image(source)
        output = stylizer.stylize(photo)
        small_photo, small_output = measured(photo, measure_side), measured(output, measure_side)
        stylized = evaluator.distances(small_output, small_photo)
        per_photo["style_distance"].append(float(stylized["style_distance"][0]))
        per_photo["content_distance"].append(float(stylized["content_distance"][0]))
        unstylized = evaluator.distances(small_photo, small_photo)
        per_photo["photo_style_distance"].append(float(unstylized["style_distance"][0]))
        if name in keep:
            kept[name] = output
    figures = {key: _mean(per_photo[key]) for key in keys}
    figures["per_photo"] = {"photos": list(photos), **per_photo}
    return figures, kept


def row_sheet(rows, gap=8, label_height=18):
    """Lays out rows of images of any sizes, each at its own size (no resampling).

    Args:
        rows: list of [(label, (H, W, 3) [0, 255] image), ...]; images in a
            row are placed side by side, top-aligned.
        gap: white pixels between cells and rows.
        label_height: pixels above each row for its labels.

    Returns:
        A float32 (H, W, 3) [0, 255] image.
    """
    if not rows or not all(rows):
        raise ValueError("row_sheet needs at least one image in every row")
    widths = [sum(im.shape[1] + gap for _, im in row) + gap for row in rows]
    heights = [label_height + max(im.shape[0] for _, im in row) + gap for row in rows]
    sheet = Image.new("RGB", (max(widths), sum(heights) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    top = gap
    for row, height in zip(rows, heights, strict=True):
        left = gap
        for label, image in row:
            draw.text((left + 2, top + 3), label, fill="black")
            sheet.paste(Image.fromarray(image_lib.to_uint8(image)), (left, top + label_height))
            left += image.shape[1] + gap
        top += height
    return np.asarray(sheet, np.float32)
