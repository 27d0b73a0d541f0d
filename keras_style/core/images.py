"""Image input/output and colour helpers: the package's one pixel convention.

Every image inside keras_style is a float32 RGB array with values in
[0, 255], shaped (H, W, 3) for one image or (N, H, W, 3) for a batch. This
module is the only place that converts files, PIL images, uint8/uint16 and
arbitrary arrays into that convention and back, so that every later stage can
trust its input.
"""

import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Largest image (in pixels) accepted by default: 12000 x 12000. Bigger files
#: are refused before decoding so a decompression bomb cannot exhaust memory.
MAX_PIXELS = 144_000_000

#: File suffixes `save_image` can write.
#: File suffixes `list_image_files` picks up (all readable here and by tf.io.decode_image).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

WRITABLE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}


def load_image(source, max_pixels=MAX_PIXELS):
    """Loads an image from a path, PIL image, numpy array or tensor.

    Files honour the EXIF orientation. Grayscale, palette, CMYK and 16-bit
    images become 8-bit-range RGB; transparent images are composited on white
    (alpha is dropped, so a transparent background reads as white paper).

    Args:
        source: a file path (`str` or `Path`), a `PIL.Image.Image`, or an
            array-like shaped (H, W), (H, W, C) or (1, H, W, C) with C in
            {1, 3, 4}. uint8 and uint16 arrays are scaled to [0, 255]; float
            arrays must already be in [0, 255].
        max_pixels: refuse images with more pixels than this.

    Returns:
        A float32 array shaped (H, W, 3) with values in [0, 255].

    Raises:
        ValueError: if the source is missing, not an image, empty, too large,
            not finite, out of range or of an unsupported shape or dtype.
    """
    if isinstance(source, (str, os.PathLike)):
        return _load_file(Path(source), max_pixels)
    if isinstance(source, Image.Image):
        return _from_pil(source, "image", max_pixels)
    return _from_array(source, max_pixels)


class ImageTooLargeError(ValueError):
    """An image with more pixels than allowed (refused before it is decoded)."""


def decode_image(data, name="upload", max_pixels=MAX_PIXELS):
    """Decodes an image file held in memory (e.g. an HTTP upload), like `load_image` a file.

    Args:
        data: the file's bytes.
        name: how messages call the image.
        max_pixels: refuse images with more pixels than this.

    Returns:
        A float32 array shaped (H, W, 3) with values in [0, 255].

    Raises:
        ImageTooLargeError: if the image has more than `max_pixels` pixels.
        ValueError: if `data` is empty, not an image, corrupt or truncated.
    """
    if not data:
        raise ValueError(f"{name} is empty (0 bytes)")
    return _decode(io.BytesIO(bytes(data)), name, max_pixels)


def _load_file(path, max_pixels):
    if not path.is_file():
        raise ValueError(f"Image file not found: {path}")
    return _decode(path, str(path), max_pixels)


def _decode(source, name, max_pixels):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                _check_size(img.size, name, max_pixels)
                img.load()
                return _from_pil(img, name, max_pixels)
    except UnidentifiedImageError as e:
        detail = "not a format Pillow decodes" if isinstance(source, io.BytesIO) else e
        raise ValueError(f"{name} is not a readable image file ({detail})") from e
    except Image.DecompressionBombError as e:
        raise ValueError(f"{name} is not a readable image file ({e})") from e
    except OSError as e:
        raise ValueError(f"{name} is a corrupt or truncated image file ({e})") from e


def _check_size(size, name, max_pixels):
    width, height = size
    if width <= 0 or height <= 0:
        raise ValueError(f"{name} is empty ({width}x{height} pixels)")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name} is too large: {width}x{height} = {width * height} pixels, "
            f"the limit is {max_pixels} (pass max_pixels to raise it)"
        )


def _from_pil(img, name, max_pixels):
    _check_size(img.size, name, max_pixels)
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        gray = np.asarray(img, dtype=np.float32)
        scale = 255.0 / 65535.0 if gray.max(initial=0) > 255 or img.mode != "I" else 1.0
        gray = np.clip(gray * scale, 0, 255)
        return np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)
    if img.mode == "F":
        return _from_array(np.asarray(img, dtype=np.float32), max_pixels)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.float32)


def _from_array(source, max_pixels):
    try:
        array = np.asarray(source)
    except Exception as e:  # tensors of exotic types
        raise ValueError(f"Cannot convert {type(source).__name__} to an image array: {e}") from e
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"Image arrays must be shaped (H, W), (H, W, C) or (1, H, W, C) with C in "
            f"1, 3 or 4; got shape {array.shape}"
        )
    _check_size((array.shape[1], array.shape[0]), "image array", max_pixels)
    array = _to_float_range(array)
    if array.shape[-1] == 4:
        alpha = array[..., 3:] / 255.0
        array = array[..., :3] * alpha + 255.0 * (1.0 - alpha)
    elif array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array, dtype=np.float32)


def _to_float_range(array):
    if array.dtype == np.uint8:
        return array.astype(np.float32)
    if array.dtype == np.uint16:
        return array.astype(np.float32) * (255.0 / 65535.0)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"Unsupported image dtype {array.dtype}; use uint8, uint16 or float")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError("Image array contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < -0.5 or high > 255.5:
        raise ValueError(f"Float image values must be in [0, 255]; got range [{low:g}, {high:g}]")
    return np.clip(array, 0.0, 255.0)


def to_uint8(image):
    """Rounds a [0, 255] float image (or batch) to uint8, clipping first."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32)), 0, 255).astype(np.uint8)


def resize(image, size):
    """Resizes a float image to (height, width) with antialiased bicubic filtering.

    Works on (H, W, 3) arrays with PIL, one float channel at a time, so it
    needs no deep-learning backend and keeps float precision.
    """
    height, width = int(size[0]), int(size[1])
    if image.shape[:2] == (height, width):
        return np.asarray(image, dtype=np.float32)
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c])).resize(
                (width, height), Image.Resampling.BICUBIC
            )
        )
        for c in range(image.shape[-1])
    ]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.float32)


def center_square(image, size):
    """The short side resized to `size` (antialiased), then the central `size` x `size` square.

    The one centre crop of the package: dataset content crops, calibration
    and test photos of the exporter, and the style report's photos.
    """
    height, width = image.shape[:2]
    scale = size / min(height, width)
    image = resize(image, (max(size, round(height * scale)), max(size, round(width * scale))))
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return image[top : top + size, left : left + size]


def list_image_files(directory):
    """Sorted image files (by suffix, case-insensitive) under `directory`, recursively.

    The one rule for photo folders: training images, dataset photos,
    calibration and test photos.

    Raises:
        ValueError: if the folder does not exist or holds no image file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"Image folder not found: {directory}")
    files = sorted(
        path
        for path in directory.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )
    if not files:
        raise ValueError(f"No images ({', '.join(IMAGE_SUFFIXES)}) found under {directory}")
    return files


def fit_size(shape, max_size=None, long_side=None):
    """Returns (height, width) scaled so the long side is `long_side`.

    With `max_size`, only shrinks (the long side becomes at most `max_size`).
    With neither, returns the shape unchanged. Sides are at least 1 pixel.
    """
    height, width = int(shape[0]), int(shape[1])
    target = long_side or (max_size if max_size and max(height, width) > max_size else None)
    if not target:
        return height, width
    scale = target / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def save_image(image, path, protect=(), quality=95):
    """Writes a [0, 255] image atomically: temporary file in the same folder, then rename.

    Args:
        image: (H, W, 3) or (1, H, W, 3) array-like in [0, 255].
        path: destination; the format follows the suffix (.png, .jpg, .webp, .bmp).
        protect: paths that must never be overwritten (typically the inputs).
        quality: JPEG/WebP quality.

    Raises:
        ValueError: on an unknown suffix, a missing folder, or when `path` is
            one of the protected paths.
    """
    path = Path(path)
    fmt = WRITABLE_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"Cannot write {path}: unknown image suffix {path.suffix!r}; "
            f"use one of {sorted(WRITABLE_SUFFIXES)}"
        )
    _check_not_protected(path, protect)
    if not path.parent.is_dir():
        raise ValueError(f"Output folder does not exist: {path.parent}")
    pixels = to_uint8(image)
    if pixels.ndim == 4:
        pixels = pixels[0]
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    with atomic_write(path) as tmp:
        Image.fromarray(pixels).save(tmp, format=fmt, **options)
    return path


def _check_not_protected(path, protect):
    for other in protect:
        if isinstance(other, (str, os.PathLike)) and Path(other).exists() and path.exists():
            if os.path.samefile(path, other):
                raise ValueError(f"Refusing to overwrite the input file {other}")


class atomic_write:
    """Context manager yielding a temporary path that is renamed to `path` on success.

    Readers never see a half-written file; on error the temporary file is
    removed and any existing `path` is left untouched.
    """

    def __init__(self, path):
        self.path = Path(path)

    def __enter__(self):
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp" + self.path.suffix, dir=self.path.parent
        )
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; use the usual mode
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
        return False


# ITU-R BT.601 full-range YCbCr, as used by JPEG.
_RGB_TO_YUV = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    dtype=np.float32,
)
_YUV_TO_RGB = np.linalg.inv(_RGB_TO_YUV).astype(np.float32)


def rgb_to_yuv(image):
    """Converts [0, 255] RGB to YCbCr (Y in [0, 255], Cb/Cr centred on 0). keras.ops."""
    from keras import ops

    return ops.matmul(ops.convert_to_tensor(image, "float32"), ops.transpose(_RGB_TO_YUV))


def yuv_to_rgb(image):
    """Inverse of `rgb_to_yuv`. keras.ops; output not clipped."""
    from keras import ops

    return ops.matmul(ops.convert_to_tensor(image, "float32"), ops.transpose(_YUV_TO_RGB))


def transfer_luminance(stylized, content):
    """Keeps the content's colours: luminance of `stylized`, chrominance of `content`.

    Both are [0, 255] RGB images (or batches) of the same shape. This is the
    "preserve original colours" option of Gatys et al. (2016), applied after
    stylization. Returns a clipped [0, 255] keras tensor.
    """
    from keras import ops

    y = rgb_to_yuv(stylized)[..., :1]
    uv = rgb_to_yuv(content)[..., 1:]
    return ops.clip(yuv_to_rgb(ops.concatenate([y, uv], axis=-1)), 0.0, 255.0)


def _color_moments(images, weights):
    """Mean (3,) and covariance (3, 3) of the pixels of `images`, pooled with `weights`."""
    weights = np.asarray(weights, np.float64) / float(np.sum(weights))
    mean, second = np.zeros(3), np.zeros((3, 3))
    for image, w in zip(images, weights, strict=True):
        pixels = np.asarray(image, np.float64).reshape(-1, 3)
        mean += w * pixels.mean(axis=0)
        second += w * (pixels.T @ pixels) / len(pixels)
    return mean, second - np.outer(mean, mean)


def _sqrtm(cov, inverse=False):
    """Symmetric (inverse) square root of a covariance matrix.

    Eigenvalues are floored at 1 % of the largest (and 1 pixel^2), so a
    near-grey photo's faint colour noise is not blown up to the painting's
    colour variance.
    """
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, max(1.0, 0.01 * float(values.max())))
    values = values ** (-0.5 if inverse else 0.5)
    return (vectors * values) @ vectors.T


def match_colors(image, references, weights=None):
    """Maps the colours of `image` onto those of `references` (mean and covariance of RGB).

    An affine colour transform x -> A (x - mean) + mean_ref with A chosen so
    the result has the references' pooled mean and covariance (Hertzmann's
    colour transfer). Used to start the slow path from the photo painted in
    the painting's palette: Gram matrices of the first VGG layers are mostly
    colour statistics, so the optimiser starts closer to the style.

    Args:
        image: [0, 255] RGB (H, W, 3) array.
        references: list of [0, 255] RGB images.
        weights: one non-negative weight per reference (None: equal).

    Returns:
        The recoloured float32 image, clipped to [0, 255].
    """
    weights = [1.0] * len(references) if weights is None else weights
    mean, cov = _color_moments([image], [1.0])
    ref_mean, ref_cov = _color_moments(references, weights)
    transform = _sqrtm(cov, inverse=True) @ _sqrtm(ref_cov)
    pixels = (np.asarray(image, np.float64).reshape(-1, 3) - mean) @ transform + ref_mean
    return np.clip(pixels, 0.0, 255.0).reshape(np.shape(image)).astype(np.float32)
