"""Image quality metrics on the package's pixel convention ([0, 255] float RGB).

Small wrappers over `tf.image.psnr` and `tf.image.ssim` with `max_val=255`,
so every report (export verification, later evaluations) measures quality the
same way and takes images or batches as numpy arrays or tensors.
"""

import numpy as np

#: Peak value of the pixel convention.
MAX_VAL = 255.0


def psnr(a, b):
    """Peak signal-to-noise ratio in dB between two images or batches in [0, 255].

    Args:
        a: array-like shaped (H, W, 3) or (N, H, W, 3).
        b: array-like of the same shape.

    Returns:
        The mean PSNR over the batch as a Python float; `inf` for identical images.

    Raises:
        ValueError: if the shapes differ or are not images.
    """
    a, b = _pair(a, b)
    import tensorflow as tf

    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2, axis=(1, 2, 3))
    if np.any(mse == 0):
        values = np.where(mse == 0, np.inf, 10.0 * np.log10(MAX_VAL**2 / np.maximum(mse, 1e-30)))
        return float(np.mean(values))
    return float(np.mean(tf.image.psnr(a, b, max_val=MAX_VAL).numpy()))


def ssim(a, b):
    """Structural similarity (Wang et al. 2004, 11x11 Gaussian window) in [-1, 1].

    Args:
        a: array-like shaped (H, W, 3) or (N, H, W, 3), at least 11 x 11 pixels.
        b: array-like of the same shape.

    Returns:
        The mean SSIM over the batch as a Python float.

    Raises:
        ValueError: if the shapes differ, are not images, or are smaller than the window.
    """
    a, b = _pair(a, b)
    if min(a.shape[1:3]) < 11:
        raise ValueError(f"SSIM needs images of at least 11 x 11 pixels; got {a.shape[1:3]}")
    import tensorflow as tf

    return float(np.mean(tf.image.ssim(a, b, max_val=MAX_VAL).numpy()))


def _pair(a, b):
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.shape != b.shape:
        raise ValueError(f"Images must have the same shape; got {a.shape} and {b.shape}")
    if a.ndim == 3:
        a, b = a[None], b[None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3) or 0 in a.shape:
        raise ValueError(f"Expected (H, W, C) or (N, H, W, C) images; got shape {a.shape}")
    return a, b
