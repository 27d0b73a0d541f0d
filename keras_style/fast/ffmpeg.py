"""Video files through ffmpeg: probing (its text output parsed), frames in, frames out, audio muxed.

The bundled ffmpeg binary of `imageio-ffmpeg` (the `video` extra) does the
decoding and encoding; this module turns its stderr and framecrc output into
a `VideoInfo` (size, frame rate, frame count, audio), reads frames as uint8
arrays and writes H.264 or VP9 files with the source's audio copied.
"""

import contextlib
import dataclasses
import logging
import os
import re
import subprocess
import tempfile
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


@contextlib.contextmanager
def video_only_path(target, audio_codec):
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


@contextlib.contextmanager
def open_writer(path, size, fps):
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


def mux_audio(video_path, source, target):
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


def check_written(path, frames):
    """Probes `path`; fails (so the temporary file is discarded) unless it holds all `frames`."""
    info = probe_video(path)
    if info.frames != frames:
        raise RuntimeError(f"ffmpeg wrote {info.frames} of {frames} frames to {path}")
    return info
