"""`keras_style.stylize()`: one call for every way the package can stylize a photo.

* `stylize(photo, painting)` (or several paintings): the slow, iterative
  method of Gatys et al., the quality reference.
* `stylize(photo, model="model.keras")`: one forward pass of a trained fast
  network (see `keras_style.fast.stylizer.FastStylizer`).
* `stylize(photo, style="great_wave")`: a pretrained style bundled with the
  package (see `keras_style.list_styles()`).
"""

import dataclasses
import inspect
import os
from pathlib import Path

import numpy as np

from keras_style.core import images as image_lib
from keras_style.core import losses
from keras_style.fast import styles
from keras_style.slow import cache, optimize
from keras_style.slow.options import DEFAULT_ITERATIONS
from keras_style.slow.options import DEFAULTS as _SLOW


def _as_list(style):
    if isinstance(style, (list, tuple)):
        if not style:
            raise ValueError("At least one style image is needed")
        return list(style)
    return [style]


def stylize(
    content,
    style=None,
    *,
    model=None,
    style_weights=None,
    size=_SLOW.size,
    iterations=None,
    optimizer=_SLOW.optimizer,
    learning_rate=_SLOW.learning_rate,
    init=_SLOW.init,
    seed=_SLOW.seed,
    style_scale=_SLOW.style_scale,
    multiscale=_SLOW.multiscale,
    tile_size=_SLOW.tile_size,
    preserve_color=_SLOW.preserve_color,
    strength=1.0,
    max_size=None,
    precision="auto",
    backbone="vgg19",
    vgg_weights="imagenet",
    content_layers=None,
    style_layers=None,
    content_weight=None,
    style_weight=None,
    tv_weight=None,
    output=None,
    overwrite_input=False,
    save_every=None,
    intermediate_dir=None,
    callback=None,
    callback_every=10,
    verbose=1,
):
    """Stylizes a photo and returns it as a float32 RGB (H, W, 3) array in [0, 255].

    Args:
        content: the photo: a path, PIL image, array or tensor (see
            `keras_style.core.images.load_image`).
        style: a painting (path, PIL image, array), a list of paintings to
            blend, or the name of a bundled style (`list_styles()`).
        model: a trained fast network (`.keras` path or `keras.Model`); when
            given, `style` must be None and one forward pass is used.
        style_weights: one blend weight per painting (default: equal).
        size: slow path: long side of the output in pixels (None: the
            content's size).
        iterations: slow path: optimizer iterations per pyramid level
            (default 160 for L-BFGS, 300 for Adam).
        optimizer: slow path: "lbfgs" (default) or "adam".
        learning_rate: slow path: Adam step size in pixel units.
        init: slow path: "color_matched" (default: the photo recoloured to
            the painting's palette), "content", "noise" or an initial image.
        seed: slow path: seed for the noise initialisation.
        style_scale: slow path: size of the style's features relative to the
            output (the painting is resized to `style_scale * size`).
        multiscale: slow path: optimise coarse to fine (faster, less memory).
        tile_size: slow path: pyramid levels whose long side exceeds this
            compute the VGG loss in tiles of about this size (the same result
            in bounded memory, about 1.5-2x the compute); None never tiles.
        preserve_color: keep the photo's original colours.
        strength: fast path: 0 returns the photo, 1 the full style.
        max_size: fast path: shrink the photo so its long side is at most this.
        precision: "auto" (default: bfloat16 on GPUs and on CPUs where it
            is faster, i.e. with AMX tiles or AMD AVX512_BF16, else float32;
            `vgg.resolve_precision`), "float32" or "bfloat16".
            Slow path: the VGG loss network's compute (1.7x faster per
            iteration on a CPU with AMX, losses within 0.1 %). Fast path:
            the network's middle layers (about 2x faster, ~57 dB PSNR against
            float32).
        backbone: slow path loss network: "vgg19" (default) or "vgg16".
        vgg_weights: "imagenet" (downloaded and cached by Keras), a local
            weights file, or None for random weights (tests only).
        content_layers, style_layers: {VGG layer name: weight} overrides.
        content_weight, style_weight, tv_weight: loss weight overrides.
        output: optional path to write the result to (atomically; never over
            an input file unless `overwrite_input`).
        overwrite_input: allow `output` to replace an input file.
        save_every: slow path: write intermediate images every N iterations
            into `intermediate_dir`.
        intermediate_dir: folder for intermediate images.
        callback: slow path: `callback(step, image, parts)` every
            `callback_every` iterations.
        callback_every: see `callback`.
        verbose: 1 shows a progress bar, 0 is silent.

    Raises:
        ValueError: on unreadable or invalid inputs or options.
    """
    inputs = _as_list(style) + [content] if style is not None else [content]
    protect = [] if overwrite_input else [p for p in inputs if isinstance(p, (str, os.PathLike))]
    if model is not None or styles.is_style_name(style):
        if model is not None and style is not None:
            raise ValueError("Pass either model= (a trained network) or style=, not both")
        from keras_style.fast import stylizer as fast

        stylizer = fast.FastStylizer(model if model is not None else style, precision=precision)
        result = stylizer.stylize(
            content, max_size=max_size, preserve_color=preserve_color, strength=strength
        )
    else:
        if style is None:
            raise ValueError("stylize() needs a style image (or model= / a bundled style name)")
        result = _stylize_slow(content, _as_list(style), **locals_for_slow(locals()))
    if output is not None:
        image_lib.save_image(result, output, protect=protect)
    return result


def _slow_options():
    """Names of the `stylize()` arguments the slow path takes, read from the signatures.

    `_stylize_slow`'s keyword-only parameters plus the `OptimizeConfig` fields
    it forwards, in `stylize()`'s order: a new option needs no list kept in step.
    """
    named = {
        p.name
        for p in inspect.signature(_stylize_slow).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    }
    named |= {f.name for f in dataclasses.fields(optimize.OptimizeConfig)}
    return [name for name in inspect.signature(stylize).parameters if name in named]


def locals_for_slow(values):
    """The subset of `stylize()` arguments that the slow path takes."""
    return {name: values[name] for name in _slow_options()}


def _loss_config(content_layers, style_layers, content_weight, style_weight, tv_weight):
    config = losses.LossConfig()
    overrides = {
        "content_layers": content_layers,
        "style_layers": style_layers,
        "content_weight": content_weight,
        "style_weight": style_weight,
        "tv_weight": tv_weight,
    }
    return losses.LossConfig(
        **{k: (v if v is not None else getattr(config, k)) for k, v in overrides.items()}
    )


def _stylize_slow(
    content,
    styles,
    *,
    style_weights,
    backbone,
    vgg_weights,
    precision,
    save_every,
    intermediate_dir,
    callback,
    callback_every,
    verbose,
    content_layers,
    style_layers,
    content_weight,
    style_weight,
    tv_weight,
    iterations,
    **options,
):
    content_image = image_lib.load_image(content)
    style_images = [image_lib.load_image(s) for s in styles]
    if iterations is None:
        optimizer = options.get("optimizer", _SLOW.optimizer)  # unknown: ValueError below
        iterations = DEFAULT_ITERATIONS.get(optimizer, _SLOW.iterations)
    config = optimize.OptimizeConfig(iterations=iterations, **options)
    content_image, crop = _pad_thin(content_image, config)
    loss_config = _loss_config(
        content_layers, style_layers, content_weight, style_weight, tv_weight
    )
    stylizer = cache.get_gatys_stylizer(loss_config, backbone, vgg_weights, precision)
    callback, callback_every = _with_saving(callback, callback_every, save_every, intermediate_dir)
    image, _ = stylizer.stylize(
        content_image,
        style_images,
        style_weights,
        config,
        verbose=verbose,
        callback=callback,
        callback_every=callback_every,
    )
    return crop(image)


#: Shortest side (pixels) the slow path's coarsest pyramid level gives the loss
#: network: VGG's four max-pools before block5 need 16. Photos that already have
#: it are left as they are.
MIN_SLOW_SIDE = 16


def _pad_thin(content, config):
    """Pads a very thin or tiny photo so that every pyramid level fits the loss network.

    A 1500x12 photo at size 512 would be 512x4 pixels, which VGG's max-pools
    reduce to nothing. Such a photo is mirrored outwards (symmetric padding,
    centred) until its short side reaches `MIN_SLOW_SIDE` at the coarsest
    level; the returned function crops the stylized result back to the
    photo's own aspect ratio.

    Returns:
        (padded content, crop function taking the stylized image).
    """
    height, width = content.shape[:2]
    long_side = config.size or max(height, width)
    scale = optimize.pyramid_sizes(long_side, config.multiscale)[0] / max(height, width)
    needed = int(np.ceil(MIN_SLOW_SIDE / scale))
    pad_h, pad_w = max(0, needed - height), max(0, needed - width)
    if not (pad_h or pad_w):
        return content, lambda image: image
    padded = np.pad(
        content,
        [(pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)],
        mode="symmetric",
    )

    def crop(image):
        ratio = image.shape[0] / padded.shape[0], image.shape[1] / padded.shape[1]
        top, left = round(pad_h // 2 * ratio[0]), round(pad_w // 2 * ratio[1])
        out_h, out_w = max(1, round(height * ratio[0])), max(1, round(width * ratio[1]))
        return np.ascontiguousarray(image[top : top + out_h, left : left + out_w])

    return padded, crop


def _with_saving(callback, callback_every, save_every, intermediate_dir):
    """Wraps `callback` so that intermediate images are also written every `save_every` steps."""
    if not save_every:
        return callback, callback_every
    if intermediate_dir is None:
        raise ValueError("save_every needs intermediate_dir")
    folder = Path(intermediate_dir)
    folder.mkdir(parents=True, exist_ok=True)

    def save_and_call(step, image, parts):
        if step % save_every == 0:
            image_lib.save_image(image, folder / f"step_{step:05d}.png")
        if callback is not None and step % callback_every == 0:
            callback(step, image, parts)

    return save_and_call, 1 if callback is None else np.gcd(int(save_every), int(callback_every))
