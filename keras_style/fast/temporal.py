"""Less flicker in stylized video: a motion mask and a temporal smoother of static regions.

Stylizing frames one by one makes static regions shimmer; `TemporalSmoother`
blends each stylized frame with the previous output where the input did not
change (`motion_mask`), so moving regions are never smeared. `flicker`
measures what is left.
"""

import numpy as np

#: Largest per-channel input change (in [0, 255] units) of a pixel that counts as
#: still: above typical codec noise, below the change a moving edge makes.
STATIC_THRESHOLD = 4.0


def motion_mask(previous, current, low=STATIC_THRESHOLD, high=4 * STATIC_THRESHOLD, radius=2):
    """Per-pixel motion between two input frames: 0 still, 1 moving, (H, W, 1) float32.

    The largest per-channel change is box-blurred (3x3) against isolated noise,
    then dilated by `radius` pixels so that the neighbourhood of a moving edge,
    where the network's receptive field sees the motion, counts as moving too.
    Changes up to `low` count as still, from `high` on as moving.
    """
    from scipy import ndimage

    change = np.abs(np.asarray(current, np.float32) - np.asarray(previous, np.float32)).max(-1)
    change = ndimage.uniform_filter(change, size=3)
    if radius > 0:
        change = ndimage.maximum_filter(change, size=2 * radius + 1)
    return np.clip((change - low) / (high - low), 0.0, 1.0)[..., None]


class TemporalSmoother:
    """Reduces flicker: blends stylized frames with the previous output where the input is still.

    `out_t = a * out_{t-1} + (1 - a) * stylized_t` with, per pixel,
    `a = smoothing * (1 - motion)`: still pixels follow an exponential moving
    average (texture noise averages out), moving pixels keep the new frame
    (no ghost trails).

    Args:
        smoothing: weight of the previous output on still pixels, in [0, 1):
            0 disables smoothing, 0.5-0.8 is a useful range.
        radius: motion-mask dilation in pixels (default: 1% of the frame's
            long side, at least 2).
    """

    def __init__(self, smoothing=0.7, radius=None):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        self.smoothing = float(smoothing)
        self.radius = radius
        self._previous = None

    def __call__(self, content, stylized):
        """Returns the smoothed version of `stylized` (the stylization of `content`)."""
        stylized = np.asarray(stylized, np.float32)
        if self._previous is None or self.smoothing == 0.0:
            output = stylized
        else:
            previous_content, previous_output = self._previous
            radius = self.radius if self.radius is not None else max(2, max(content.shape) // 100)
            keep = self.smoothing * (1.0 - motion_mask(previous_content, content, radius=radius))
            output = keep * previous_output + (1.0 - keep) * stylized
        self._previous = (np.asarray(content, np.float32), output)
        return output


def flicker(contents, outputs, threshold=STATIC_THRESHOLD):
    """Mean absolute frame-to-frame change of `outputs` where `contents` is still.

    A pixel counts as still between two frames when no channel of the input
    changed by more than `threshold`; on those pixels a perfectly stable
    stylization would not change at all, so the figure (in [0, 255] units)
    measures flicker alone, not motion.

    Args:
        contents: the input frames, a sequence of (H, W, 3) arrays.
        outputs: the stylized frames, same length and shape.
        threshold: still-pixel threshold in [0, 255] units.

    Raises:
        ValueError: on mismatched inputs, fewer than two frames, or no still pixel.
    """
    if len(contents) != len(outputs) or len(contents) < 2:
        raise ValueError("flicker() needs two equally long sequences of at least two frames")
    total, count = 0.0, 0
    for t in range(1, len(contents)):
        still = np.abs(np.subtract(contents[t], contents[t - 1], dtype=np.float32)).max(-1)
        still = still <= threshold
        change = np.abs(np.subtract(outputs[t], outputs[t - 1], dtype=np.float32)).mean(-1)
        total += float(change[still].sum())
        count += int(still.sum())
    if count == 0:
        raise ValueError("No still pixels: flicker is undefined for this clip")
    return total / count
