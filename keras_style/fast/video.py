"""Stylizing videos: decode, stylize frames in batches, smooth flicker, encode, copy the audio.

Decoding and encoding run in ffmpeg subprocesses (the binary bundled with
`imageio-ffmpeg`, `pip install keras-style[video]`), so they overlap with the
network's work. Frames are float32 RGB (H, W, 3) arrays in [0, 255], the
package's one convention; a *stylizer* is any callable mapping a float32
(N, H, W, 3) batch in [0, 255] to a batch of the same shape (a trained
network's forward pass, a `FastStylizer`, or a test double).

Feed-forward stylization flickers: each frame is stylized independently, so
small input changes (sensor and codec noise) move the painted texture from
frame to frame even where the scene is still. `TemporalSmoother` blends each
stylized frame with the previous output where the *input* did not change,
and keeps the new frame where it did, so still regions calm down without
smearing motion. `flicker()` measures the effect.
"""

import contextlib
import dataclasses
import logging
import os
import re
import subprocess
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from keras_style.core import images

#: Output containers and the video codec written into each (H.264 or VP9, yuv420p).
VIDEO_CODECS = {
    ".mp4": "libx264",
    ".m4v": "libx264",
    ".mov": "libx264",
    ".mkv": "libx264",
    ".webm": "libvpx-vp9",
}

_CODEC_OPTIONS = {
    "libx264": ["-crf", "18", "-preset", "medium"],
    "libvpx-vp9": ["-crf", "30", "-b:v", "0", "-row-mt", "1"],
}

#: Audio codec used when the source's audio cannot be copied into the output container.
_AUDIO_FALLBACK = {".webm": "libopus"}

#: Largest per-channel input change (in [0, 255] units) of a pixel that counts as
#: still: above typical codec noise, below the change a moving edge makes.
STATIC_THRESHOLD = 4.0

#: Frame durations may differ from their median by this fraction (or one time-base
#: tick, whichever is larger) before a video counts as variable frame rate.
_VFR_TOLERANCE = 0.1

#: Common frame rates, to undo the rounding of millisecond time bases (29.97 -> 30000/1001).
_STANDARD_FPS = [Fraction(n, 1001) for n in (24000, 30000, 48000, 60000)] + [
    Fraction(n) for n in (10, 12, 15, 24, 25, 30, 48, 50, 60, 90, 120)
]

_FASTSTART = {".mp4", ".m4v", ".mov"}


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What `probe_video` learns about a video file.

    Attributes:
        path: the file.
        size: (width, height) of the decoded frames (after any rotation flag).
        fps: the constant frame rate, as an exact fraction.
        frames: number of frames (packets) in the video stream.
        codec: the video codec's name, e.g. "h264".
        audio_codec: the first audio stream's codec, or None without audio.
    """

    path: Path
    size: tuple
    fps: Fraction
    frames: int
    codec: str
    audio_codec: str | None


def ffmpeg_exe():
    """The ffmpeg binary bundled with imageio-ffmpeg.

    Raises:
        ValueError: when the optional video dependencies are not installed.
    """
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise ValueError(
            "Video support needs imageio and imageio-ffmpeg: pip install 'keras-style[video]'"
        ) from e
    return imageio_ffmpeg.get_ffmpeg_exe()


def probe_video(path):
    """Reads a video's stream headers and packet timestamps without decoding it.

    Args:
        path: a video file.

    Returns:
        A `VideoInfo`.

    Raises:
        ValueError: if the file is missing or unreadable, is a still image,
            has no video stream or no frames, uses a codec ffmpeg does not
            know, or has a variable frame rate.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Video file not found: {path}")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    cmd += ["-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"]
    result = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
    header = _input_header(result.stderr)
    if not header:
        raise ValueError(f"{path} is not a readable video file ({_last_line(result.stderr)})")
    codec, size, audio_codec = _parse_streams(path, header)
    if result.returncode != 0:
        raise ValueError(f"{path} is not a readable video file ({_last_line(result.stderr)})")
    pts, time_base = _parse_packets(result.stdout)
    if not pts:
        raise ValueError(f"{path} has no video frames")
    return VideoInfo(
        path=path,
        size=size,
        fps=_constant_fps(path, pts, time_base, header),
        frames=len(pts),
        codec=codec,
        audio_codec=audio_codec,
    )


def _last_line(text):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no details from ffmpeg"


def _input_header(stderr):
    """The 'Input #0' part of ffmpeg's log (stream descriptions of the source)."""
    start = stderr.find("Input #0")
    if start < 0:
        return ""
    end = stderr.find("Stream mapping:", start)
    return stderr[start : end if end >= 0 else len(stderr)]


def _parse_streams(path, header):
    video = re.search(r"Stream #0:\d+.*?: Video: (\S+)(?: \(([^)]*)\))*(.*)", header)
    if video is None:
        raise ValueError(f"{path} has no video stream")
    container = header.split("\n", 1)[0]
    if "_pipe" in container or "image2" in container:
        raise ValueError(f"{path} is a still image, not a video; use `keras-style stylize`")
    codec = video.group(1).rstrip(",")
    if codec == "none":
        tag = re.search(r"Video: none \((\w+)", header)
        raise ValueError(
            f"{path} uses an unknown video codec ({tag.group(1) if tag else 'no codec tag'})"
        )
    match = re.search(r", (\d+)x(\d+)", video.group(0))
    if match is None:
        raise ValueError(f"{path}: cannot read the video's frame size")
    width, height = int(match.group(1)), int(match.group(2))
    rotation = re.search(r"rotation of (-?[\d.]+) degrees", header)
    if rotation and round(abs(float(rotation.group(1)))) % 180 == 90:
        width, height = height, width
    audio = re.search(r"Stream #0:\d+.*?: Audio: (\S+)", header)
    return codec, (width, height), audio.group(1).rstrip(",") if audio else None


def _parse_packets(framecrc):
    """Presentation timestamps and time base of the packets in an ffmpeg framecrc listing."""
    time_base = Fraction(1)
    pts = []
    for line in framecrc.splitlines():
        if line.startswith("#tb 0:"):
            time_base = Fraction(line.split(":", 1)[1].strip())
        elif line and not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            if len(fields) >= 3 and fields[0] == "0":
                pts.append(int(fields[2]) if fields[2].lstrip("-").isdigit() else None)
    return pts, time_base


def _constant_fps(path, pts, time_base, header):
    """The frame rate, from packet timestamps; refuses variable frame rates."""
    known = sorted(p for p in pts if p is not None)
    if len(known) < 2 or known[-1] == known[0]:
        declared = re.search(r", ([\d.]+) fps", header)
        if declared is None:
            raise ValueError(f"{path} does not declare a frame rate")
        return _snap_fps(Fraction(declared.group(1)))
    intervals = np.diff(known)
    median = float(np.median(intervals))
    spread = np.abs(intervals - median).max()
    if spread > max(1.0, _VFR_TOLERANCE * median):
        shortest, longest = (
            float(v * time_base) * 1000 for v in (intervals.min(), intervals.max())
        )
        raise ValueError(
            f"{path} has a variable frame rate (frames last {shortest:.1f} to {longest:.1f} ms); "
            "convert it first, e.g. ffmpeg -i IN -fps_mode cfr -r 30 OUT.mp4"
        )
    return _snap_fps(Fraction(len(known) - 1) / ((known[-1] - known[0]) * time_base))


def _snap_fps(fps):
    for standard in _STANDARD_FPS:
        if abs(fps - standard) <= standard * Fraction(1, 1000):
            return standard
    return fps.limit_denominator(1001)


def output_size(size, max_size=None):
    """(width, height) of the stylized video: shrunk to `max_size`, rounded down to even sides.

    H.264 and VP9 in yuv420p need even sides, so odd ones lose their last pixel.
    """
    height, width = images.fit_size((size[1], size[0]), max_size=max_size)
    return max(2, width - width % 2), max(2, height - height % 2)


def _filter(source_size, size):
    """The ffmpeg video filter producing `size` from `source_size` (crop or downscale)."""
    if tuple(size) == tuple(source_size):
        return []
    if size[0] >= source_size[0] - 1 and size[1] >= source_size[1] - 1:
        return ["-vf", f"crop={size[0]}:{size[1]}:0:0"]
    return ["-vf", f"scale={size[0]}:{size[1]}:flags=area,setsar=1"]


def read_frames(path, size=None, info=None):
    """Yields the frames of a video as float32 RGB (H, W, 3) arrays in [0, 255].

    Args:
        path: a video file.
        size: (width, height) to crop or scale the frames to (default: the
            video's own size).
        info: its `VideoInfo` if already probed.

    Raises:
        ValueError: if the video cannot be probed or decoded.
    """
    import imageio_ffmpeg

    info = info or probe_video(path)
    size = tuple(size or info.size)
    output_params = ["-map", "0:v:0", "-fps_mode", "passthrough"] + _filter(info.size, size)
    reader = imageio_ffmpeg.read_frames(str(path), output_params=output_params)
    try:
        with _quiet_logger("imageio_ffmpeg"):  # it warns whenever frames are scaled
            meta = next(reader)
        if tuple(meta["size"]) != size:
            raise ValueError(f"{path} decodes to {meta['size']} frames, expected {size}")
        for buffer in reader:
            pixels = np.frombuffer(buffer, np.uint8).reshape(size[1], size[0], 3)
            yield pixels.astype(np.float32)
    except (OSError, RuntimeError, IndexError, AttributeError, KeyError) as e:
        raise ValueError(f"Cannot decode {path}: {_last_line(str(e))}") from e
    finally:
        reader.close()


@contextlib.contextmanager
def _quiet_logger(name):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_video(path, max_size=None):
    """Decodes a whole (short) video into memory.

    Returns:
        (frames, fps): a float32 (T, H, W, 3) array in [0, 255] and the frame rate.
    """
    info = probe_video(path)
    size = output_size(info.size, max_size) if max_size else info.size
    return np.stack(list(read_frames(path, size, info))), info.fps


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
    info = probe_video(input)
    size = output_size(info.size, max_size)
    stylizer = _make_stylizer(style, model, preserve_color, strength)
    with images.atomic_write(output) as target:
        with _video_only_path(target, info.audio_codec) as video_path:
            written = _stylize_frames(
                info, size, stylizer, video_path, batch_size, smoothing, verbose
            )
            if video_path != target:
                _mux_audio(video_path, input, target)
        written_info = _check_written(target, written)
    return dataclasses.replace(written_info, path=output)


def _check_options(input, output, max_size, batch_size, smoothing, strength):
    if output.suffix.lower() not in VIDEO_CODECS:
        raise ValueError(
            f"Cannot write {output}: unknown video suffix {output.suffix!r}; "
            f"use one of {sorted(VIDEO_CODECS)}"
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


@contextlib.contextmanager
def _video_only_path(target, audio_codec):
    """Where to encode the frames: `target` itself, or a temporary file when audio follows."""
    if audio_codec is None:
        yield target
        return
    fd, name = tempfile.mkstemp(prefix=".video-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


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
    frames = contextlib.closing(read_frames(info.path, size, info))
    with frames as decoded, _writer(path, size, info.fps) as writer:
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


@contextlib.contextmanager
def _writer(path, size, fps):
    """An imageio-ffmpeg frame writer; killed (not finalised) if the block fails."""
    import imageio_ffmpeg

    codec = VIDEO_CODECS[path.suffix.lower()]
    params = _CODEC_OPTIONS[codec] + _faststart(path)
    writer = imageio_ffmpeg.write_frames(
        str(path),
        tuple(size),
        fps=fps,
        codec=codec,
        quality=None,
        macro_block_size=2,
        ffmpeg_log_level="error",
        output_params=params,
    )
    writer.send(None)
    try:
        yield writer
    except BaseException:
        with contextlib.suppress(BaseException):
            # imageio-ffmpeg kills its ffmpeg process on KeyboardInterrupt instead of
            # waiting for it to finish a file that is about to be deleted.
            writer.throw(KeyboardInterrupt)
        raise
    writer.close()


def _faststart(path):
    return ["-movflags", "+faststart"] if path.suffix.lower() in _FASTSTART else []


def _mux_audio(video_path, source, target):
    """Copies `source`'s audio next to the encoded video; re-encodes it if the container needs."""
    base = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error"]
    base += ["-i", str(video_path), "-i", str(source), "-map", "0:v:0", "-map", "1:a?"]
    base += ["-c:v", "copy"] + _faststart(target)
    fallback = _AUDIO_FALLBACK.get(target.suffix.lower(), "aac")
    for audio_codec in ("copy", fallback):
        result = subprocess.run(
            base + ["-c:a", audio_codec, str(target)], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            return
    raise RuntimeError(f"ffmpeg could not add the audio of {source}: {_last_line(result.stderr)}")


def _check_written(path, frames):
    """Probes `path`; fails (so the temporary file is discarded) unless it holds all `frames`."""
    info = probe_video(path)
    if info.frames != frames:
        raise RuntimeError(f"ffmpeg wrote {info.frames} of {frames} frames to {path}")
    return info
