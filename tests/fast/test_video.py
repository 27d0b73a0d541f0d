"""Tests for keras_style.fast.video and `keras-style video`, on tiny clips generated with ffmpeg."""

import subprocess
from fractions import Fraction

import numpy as np
import pytest

pytest.importorskip("imageio_ffmpeg")

from keras_style import cli  # noqa: E402
from keras_style.fast import ffmpeg, styles, temporal, video  # noqa: E402


def _ffmpeg(*args):
    cmd = [ffmpeg.ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error", *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def _testsrc(size="64x48", rate=12, seconds=1):
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Small videos, good and bad, generated once for the module."""
    folder = tmp_path_factory.mktemp("clips")
    c = {name: folder / name for name in ("audio.mp4", "odd.mkv", "vfr.mp4", "rotated.mp4")}
    sine = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1"]
    _ffmpeg(
        *_testsrc(), *sine, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", c["audio.mp4"]
    )
    _ffmpeg(*_testsrc(), "-vf", "scale=65:49", "-pix_fmt", "yuv444p", "-c:v", "ffv1", c["odd.mkv"])
    vfr = "setpts='if(lt(N,6),N,6+3*(N-6))/(12*TB)'"
    _ffmpeg(*_testsrc(), "-vf", vfr, "-fps_mode", "passthrough", "-c:v", "libx264", c["vfr.mp4"])
    _ffmpeg("-display_rotation", "90", "-i", c["audio.mp4"], "-c", "copy", c["rotated.mp4"])
    c["mpeg4.avi"] = folder / "mpeg4.avi"
    _ffmpeg(*_testsrc(), "-c:v", "mpeg4", c["mpeg4.avi"])
    c["unknown_codec.avi"] = folder / "unknown_codec.avi"  # fourcc patched to nonsense
    c["unknown_codec.avi"].write_bytes(c["mpeg4.avi"].read_bytes().replace(b"FMP4", b"QQQQ"))
    c["no_frames.avi"] = folder / "no_frames.avi"
    _ffmpeg(*_testsrc(), "-frames:v", "0", "-c:v", "mpeg4", c["no_frames.avi"])
    c["sound.m4a"] = folder / "sound.m4a"
    _ffmpeg(*sine, c["sound.m4a"])
    c["still.png"] = folder / "still.png"
    _ffmpeg(*_testsrc(), "-frames:v", "1", c["still.png"])
    c["text.mp4"] = folder / "text.mp4"
    c["text.mp4"].write_text("not a video\n")
    c["empty.mp4"] = folder / "empty.mp4"
    c["empty.mp4"].write_bytes(b"")
    c["truncated.mp4"] = folder / "truncated.mp4"
    c["truncated.mp4"].write_bytes(c["audio.mp4"].read_bytes()[:3000])
    return c


def invert(batch):
    return 255.0 - batch


def _audio_packets(path):
    """(pts, size, crc) of every audio packet: equal lists mean the audio was copied bit-exactly."""
    cmd = [ffmpeg.ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-c", "copy"]
    listing = subprocess.run(cmd + ["-f", "framecrc", "-"], capture_output=True, text=True).stdout
    rows = [line.split(",") for line in listing.splitlines() if not line.startswith("#")]
    return [(r[2].strip(), r[4].strip(), r[5].strip()) for r in rows if len(r) >= 6]


def _only(folder, *names):
    """Asserts the folder holds exactly these file names (no temporary leftovers)."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def test_round_trip_keeps_frames_size_fps_and_audio(clips, tmp_path):
    out = tmp_path / "out.mp4"
    info = video.stylize_video(clips["audio.mp4"], out, model=invert, verbose=0)
    assert (info.frames, info.size, info.fps, info.audio_codec) == (12, (64, 48), 12, "aac")
    assert info.path == out
    _only(tmp_path, "out.mp4")
    source, _ = ffmpeg.read_video(clips["audio.mp4"])
    result, fps = ffmpeg.read_video(out)
    assert result.shape == source.shape and fps == Fraction(12)
    # Every frame is the stylizer's output of the matching input frame (up to codec loss).
    assert np.abs(result - (255.0 - source)).mean() < 4.0
    assert _audio_packets(out) == _audio_packets(clips["audio.mp4"]) != []


def test_no_audio_odd_size_is_cropped_to_even(clips, tmp_path):
    info = video.stylize_video(clips["odd.mkv"], tmp_path / "out.mov", model=invert, verbose=0)
    assert (info.frames, info.size, info.audio_codec) == (12, (64, 48), None)


def test_max_size_and_webm_reencodes_audio(clips, tmp_path):
    out = tmp_path / "small.webm"
    info = video.stylize_video(clips["audio.mp4"], out, model=invert, max_size=33, verbose=0)
    # AAC cannot be copied into WebM, so the audio falls back to Opus.
    assert (info.frames, info.size, info.codec, info.audio_codec) == (12, (32, 24), "vp9", "opus")


def test_rotated_video_keeps_its_orientation(clips, tmp_path):
    info = video.stylize_video(clips["rotated.mp4"], tmp_path / "r.mp4", model=invert, verbose=0)
    assert info.size == (48, 64)


def test_frames_are_stylized_in_batches(clips, tmp_path):
    sizes = []

    def record(batch):
        sizes.append(batch.shape)
        return batch

    video.stylize_video(clips["odd.mkv"], tmp_path / "b.mp4", model=record, batch_size=5, verbose=0)
    assert sizes == [(5, 48, 64, 3), (5, 48, 64, 3), (2, 48, 64, 3)]


def test_strength_zero_and_preserve_color_keep_the_input(clips, tmp_path):
    source, _ = ffmpeg.read_video(clips["audio.mp4"])
    out = tmp_path / "s0.mp4"
    video.stylize_video(clips["audio.mp4"], out, model=invert, strength=0.0, verbose=0)
    assert np.abs(ffmpeg.read_video(out)[0] - source).mean() < 3.0
    # A stylizer that only drops the colours gets them back with preserve_color.
    luminance = lambda b: np.repeat(b @ np.float32([[0.299], [0.587], [0.114]]), 3, -1)  # noqa: E731
    video.stylize_video(clips["audio.mp4"], out, model=luminance, verbose=0)
    assert np.abs(ffmpeg.read_video(out)[0] - source).mean() > 20.0
    video.stylize_video(clips["audio.mp4"], out, model=luminance, preserve_color=True, verbose=0)
    assert np.abs(ffmpeg.read_video(out)[0] - source).mean() < 3.0


def test_progress_bar_reports_fps(clips, tmp_path, capsys):
    video.stylize_video(clips["odd.mkv"], tmp_path / "p.mp4", model=invert, verbose=1)
    printed = capsys.readouterr().out
    assert "12/12" in printed and "fps:" in printed


def _scene(frames=12, size=48, step=3):
    """A still gradient with a bright square sliding right by `step` pixels per frame."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    background = np.stack([x * 4, y * 4, np.full_like(x, 90)], -1)
    scene = np.repeat(background[None], frames, 0)
    for t in range(frames):
        scene[t, 10:22, 4 + step * t : 16 + step * t] = 240.0
    return scene


def _noisy_stylizer(seed=0):
    rng = np.random.default_rng(seed)
    return lambda batch: np.clip(0.8 * batch + rng.normal(0, 12, batch.shape), 0, 255)


def test_smoothing_reduces_flicker_without_smearing_motion():
    scene = _scene()
    raw = _noisy_stylizer()(scene).astype(np.float32)
    smoother = temporal.TemporalSmoother(0.8)
    smoothed = np.stack([smoother(c, s) for c, s in zip(scene, raw, strict=True)])
    before, after = temporal.flicker(scene, raw), temporal.flicker(scene, smoothed)
    assert after < 0.5 * before
    # Pixels that change in the input keep the new stylized frame exactly.
    for t in range(1, len(scene)):
        moving = np.abs(scene[t] - scene[t - 1]).max(-1) > 4 * temporal.STATIC_THRESHOLD
        assert moving.any()
        np.testing.assert_array_equal(smoothed[t][moving], raw[t][moving])


def test_smoothing_end_to_end_lowers_flicker_of_the_file(clips, tmp_path):
    source, _ = ffmpeg.read_video(clips["audio.mp4"])
    figures = {}
    for smoothing in (0.0, 0.8):
        out = tmp_path / f"s{smoothing}.mp4"
        model = _noisy_stylizer(seed=1)
        video.stylize_video(clips["audio.mp4"], out, model=model, smoothing=smoothing, verbose=0)
        figures[smoothing] = temporal.flicker(source, ffmpeg.read_video(out)[0])
    assert figures[0.8] < 0.6 * figures[0.0]


def test_flicker_metric():
    scene = _scene()
    assert temporal.flicker(scene, scene) == 0.0
    shifted = scene + np.arange(len(scene), dtype=np.float32)[:, None, None, None]
    assert temporal.flicker(scene, shifted) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two"):
        temporal.flicker(scene[:1], scene[:1])
    with pytest.raises(ValueError, match="still"):
        temporal.flicker(np.stack([scene[0], 255 - scene[0]]), scene[:2])


@pytest.mark.parametrize(
    "name, match",
    [
        ("text.mp4", "not a readable video"),
        ("empty.mp4", "not a readable video"),
        ("truncated.mp4", "not a readable video"),
        ("missing.mp4", "not found"),
        ("sound.m4a", "no video stream"),
        ("still.png", "still image"),
        ("no_frames.avi", "no video frames"),
        ("unknown_codec.avi", "unknown video codec \\(QQQQ\\)"),
        ("vfr.mp4", "variable frame rate"),
    ],
)
def test_bad_inputs_raise_and_write_nothing(clips, tmp_path, name, match):
    with pytest.raises(ValueError, match=match):
        video.stylize_video(clips.get(name, tmp_path / name), tmp_path / "o.mp4", model=invert)
    _only(tmp_path)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"output": "o.gif"}, "unknown video suffix"),
        ({"output": "missing/o.mp4"}, "folder does not exist"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_size": 1}, "max_size"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"strength": 1.5}, "strength"),
        ({"style": "mosaic"}, "exactly one"),
        ({"model": None}, "exactly one"),
        ({"model": None, "style": "no_such_style"}, "available styles"),
    ],
)
def test_bad_options_raise_and_write_nothing(clips, tmp_path, options, match):
    kwargs = {"model": invert, "verbose": 0, **options}
    output = tmp_path / kwargs.pop("output", "o.mp4")
    with pytest.raises(ValueError, match=match):
        video.stylize_video(clips["audio.mp4"], output, **kwargs)
    _only(tmp_path)


def test_refuses_to_overwrite_the_input(clips, tmp_path):
    copy = tmp_path / "in.mp4"
    copy.write_bytes(clips["audio.mp4"].read_bytes())
    with pytest.raises(ValueError, match="overwrite"):
        video.stylize_video(copy, copy, model=invert)


@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError])
def test_interrupt_leaves_existing_output_untouched(clips, tmp_path, error):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"previous result")
    calls = []

    def fail_on_second_batch(batch):
        calls.append(1)
        if len(calls) == 2:
            raise error("stop")
        return batch

    with pytest.raises(error):
        video.stylize_video(
            clips["audio.mp4"], out, model=fail_on_second_batch, batch_size=4, verbose=0
        )
    assert out.read_bytes() == b"previous result"
    _only(tmp_path, "o.mp4")


def test_stylizer_may_squeeze_a_batch_of_one(clips, tmp_path):
    squeeze = lambda b: 255.0 - (b[0] if len(b) == 1 else b)  # noqa: E731
    out = tmp_path / "o.mp4"
    info = video.stylize_video(clips["audio.mp4"], out, model=squeeze, batch_size=5, verbose=0)
    assert info.frames == 12


def test_stylizer_returning_wrong_shape_is_an_error(clips, tmp_path):
    with pytest.raises(ValueError, match="returned shape"):
        video.stylize_video(clips["audio.mp4"], tmp_path / "o.mp4", model=lambda b: b[:, ::2])
    _only(tmp_path)


@pytest.fixture
def bundled_style(tmp_path, monkeypatch):
    from keras_style.core.transformer_net import TransformerNet

    folder = tmp_path / "styles"
    styles.save_bundled_style(TransformerNet(0.25), "tiny", {"painting": "test"}, folder)
    monkeypatch.setattr(styles, "ASSETS_DIR", folder)
    return folder


def test_cli_video_with_bundled_style_and_list_styles(clips, tmp_path, bundled_style, capsys):
    out = tmp_path / "o.mp4"
    args = ["video", str(clips["audio.mp4"]), "-o", str(out), "--style", "tiny", "-q"]
    assert cli.main([*args, "--max-size", "32", "--smoothing", "0.5"]) == 0
    assert ffmpeg.probe_video(out).size == (32, 24)
    assert cli.main(["list-styles"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "tiny\ttest"


def test_cli_video_with_model_file(clips, tmp_path):
    from keras_style.core.transformer_net import TransformerNet

    model = tmp_path / "m.keras"
    TransformerNet(0.25).save(model)
    out = tmp_path / "o.mkv"
    assert (
        cli.main(["video", str(clips["odd.mkv"]), "-o", str(out), "--model", str(model), "-q"]) == 0
    )
    assert ffmpeg.probe_video(out).frames == 12


def test_cli_bad_video_exits_2_with_one_line(clips, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    args = ["video", str(clips["vfr.mp4"]), "-o", str(out), "--model", "x.keras", "-q"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "variable frame rate" in err[0]
    assert not out.exists()


def test_cli_list_styles_when_none_installed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(styles, "ASSETS_DIR", tmp_path)
    assert cli.main(["list-styles"]) == 0
    assert "no bundled styles" in capsys.readouterr().err
