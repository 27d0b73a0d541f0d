"""Stylizing videos: decode, stylize frames in batches, smooth flicker, encode, copy the audio.

Decoding and encoding run in ffmpeg subprocesses (the binary bundled with
`imageio-ffmpeg`, `pip install keras-style[video]`), so they overlap with the
network's work. Frames are float32 RGB (H, W, 3) arrays in [0, 255], the
package's one convention; a *stylizer* is any callable mapping a float32
(N, H, W, 3) batch in [0, 255] to a batch of the same shape (a trained
network's forward pass, a `FastStylizer`, or a test double).

Feed-forward stylization flickers: each frame is stylized independently, so
small input changes (sensor and codec noise) move the painted texture from
frame to frame even where the scene is still. `temporal.TemporalSmoother` blends each
stylized frame with the previous output where the *input* did not change,
and keeps the new frame where it did, so still regions calm down without
smearing motion. `temporal.flicker()` measures the effect; `ffmpeg` does the file work.
"""

import contextlib
import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from keras_style.core import images
from keras_style.fast import ffmpeg
from keras_style.fast.temporal import TemporalSmoother


def stylize_video(
    input,
    output,
    style=None,
    model=None,
    max_size=None,
    batch_size=4,
    smoothing=0.0,
    preserve_color=False,
    strength=1.0,
    verbose=1,
):
    """Stylizes every frame of a video and writes it with the original frame rate and audio.

    Args:
        input: the source video file.
        output: where to write the result (.mp4, .m4v, .mov, .mkv or .webm);
            written atomically: nothing half-written remains on error or Ctrl-C.
        style: a bundled style name (see `keras_style.fast.styles.list_styles()`).
        model: instead of `style`: a trained network (`.keras` path or
            `keras.Model`), or any stylizer callable mapping a float32
            (N, H, W, 3) batch in [0, 255] to the same shape.
        max_size: shrink frames so the long side is at most this many pixels.
        batch_size: frames stylized per network call.
        smoothing: temporal smoothing of still regions in [0, 1) (see
            `TemporalSmoother`); 0 turns it off.
        preserve_color: keep the video's original colours.
        strength: 0 returns the input frames, 1 the full style.
        verbose: 1 shows a progress bar (frames per second, ETA), 0 is silent.

    Returns:
        The `VideoInfo` of the written file.

    Raises:
        ValueError: on bad options or an unusable input video.
    """
    input, output = Path(input), Path(output)
    _check_options(input, output, max_size, batch_size, smoothing, strength)
    info = ffmpeg.probe_video(input)
    size = ffmpeg.output_size(info.size, max_size)
    stylizer = _make_stylizer(style, model, preserve_color, strength)
    with images.atomic_write(output) as target:
        with ffmpeg.video_only_path(target, info.audio_codec) as video_path:
            written = _stylize_frames(
                info, size, stylizer, video_path, batch_size, smoothing, verbose
            )
            if video_path != target:
                ffmpeg.mux_audio(video_path, input, target)
        written_info = ffmpeg.check_written(target, written)
    return dataclasses.replace(written_info, path=output)


def _check_options(input, output, max_size, batch_size, smoothing, strength):
    if output.suffix.lower() not in ffmpeg.VIDEO_CODECS:
        raise ValueError(
            f"Cannot write {output}: unknown video suffix {output.suffix!r}; "
            f"use one of {sorted(ffmpeg.VIDEO_CODECS)}"
        )
    if not output.parent.is_dir():
        raise ValueError(f"Output folder does not exist: {output.parent}")
    if output.exists() and input.exists() and os.path.samefile(input, output):
        raise ValueError(f"Refusing to overwrite the input video {input}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if max_size is not None and (not isinstance(max_size, int) or max_size < 2):
        raise ValueError(f"max_size must be an integer of at least 2, got {max_size!r}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength!r}")


def _make_stylizer(style, model, preserve_color, strength):
    """The batch callable: network (or given callable), then original colours and strength."""
    if (style is None) == (model is None):
        raise ValueError("Pass exactly one of style= (a bundled style name) or model=")
    if model is not None and callable(model) and not _is_keras_model(model):
        network = model
    else:
        from keras_style.fast import stylizer as fast

        # FastStylizer's rewritten graph (bfloat16 where native): ~2.4x the plain model's fps.
        network = fast.FastStylizer(model if model is not None else style).stylize

    def stylize_batch(batch):
        result = np.asarray(network(batch), dtype=np.float32)
        if len(batch) == 1 and result.shape == batch.shape[1:]:
            result = result[None]  # stylizers may squeeze a batch of one (FastStylizer.stylize)
        if result.shape != batch.shape:
            raise ValueError(f"The stylizer returned shape {result.shape} for {batch.shape}")
        if preserve_color:
            from keras import ops

            result = ops.convert_to_numpy(images.transfer_luminance(result, batch))
        if strength != 1.0:
            result = strength * result + (1.0 - strength) * batch
        return np.clip(result, 0.0, 255.0)

    return stylize_batch


def _is_keras_model(obj):
    import keras

    return isinstance(obj, keras.Model)


def _batches(frames, batch_size):
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def _stylize_frames(info, size, stylizer, path, batch_size, smoothing, verbose):
    """Decodes, stylizes, smooths and encodes every frame; returns the number written."""
    smoother = TemporalSmoother(smoothing) if smoothing else None
    progress = _Progress(info.frames, verbose)
    written = 0
    frames = contextlib.closing(ffmpeg.read_frames(info.path, size, info))
    with frames as decoded, ffmpeg.open_writer(path, size, info.fps) as writer:
        for batch in _batches(decoded, batch_size):
            for content, frame in zip(batch, stylizer(batch), strict=True):
                if smoother is not None:
                    frame = smoother(content, frame)
                writer.send(images.to_uint8(frame))
            written += len(batch)
            progress.update(written)
    if written == 0:
        raise ValueError(f"{info.path} has no decodable frames")
    progress.done(written)
    return written


class _Progress:
    """A `keras.utils.Progbar` over frames that also shows frames per second."""

    def __init__(self, frames, verbose):
        self.bar = None
        if verbose:
            import keras

            self.bar = keras.utils.Progbar(frames, unit_name="frame", stateful_metrics=["fps"])
        self.start = time.perf_counter()

    def update(self, done, finalize=False):
        if self.bar is not None:
            fps = done / max(time.perf_counter() - self.start, 1e-9)
            self.bar.update(done, values=[("fps", fps)], finalize=finalize)

    def done(self, done):
        if self.bar is not None:
            self.bar.target = done
            self.update(done, finalize=True)
