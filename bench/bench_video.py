"""Video benchmark: stylization speed (frames per second) and the flicker figure with smoothing.

Usage:
    python bench/bench_video.py [--frames 8] [--batch-size 4] [--sizes 640x480,1280x720]
        [--style udnie] [--out PATH.json]

Speed uses a full-width TransformerNet (untrained weights: the same arithmetic
as a trained one), or a bundled style with `--style NAME`, on the TensorFlow
backend, measured two ways per size: the network alone on in-memory batches,
and `stylize_video` end to end on a generated clip (decoding, encoding and
the temporal smoother included).

Flicker is `keras_style.fast.temporal.flicker` (mean frame-to-frame change of the
output on pixels that are still in the input, [0, 255] units) on a
generated clip with moving and still parts, with and without smoothing, for
a stylizer that adds fresh noise to every frame (the failure mode smoothing
targets) and for the untrained network fed a clip with sensor noise.
"""

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_style.core.transformer_net import TransformerNet  # noqa: E402
from keras_style.fast import ffmpeg, styles, temporal, video  # noqa: E402
from keras_style.fast import stylizer as fast  # noqa: E402


def make_clip(path, width, height, frames, fps=24, noise=0):
    """A test-pattern clip (moving and still parts), optionally with per-frame sensor noise."""
    source = f"testsrc2=size={width}x{height}:rate={fps}"
    noise_filter = ["-vf", f"noise=alls={noise}:allf=t"] if noise else []
    cmd = [ffmpeg.ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", source]
    cmd += noise_filter + ["-frames:v", str(frames), "-c:v", "libx264", "-crf", "12", str(path)]
    subprocess.run(cmd, check=True)


def network_fps(net, width, height, frames, batch_size):
    batch = np.random.default_rng(0).uniform(0, 255, (batch_size, height, width, 3))
    batch = batch.astype("float32")
    stylizer = fast.FastStylizer(net, batch_size=batch_size)  # what stylize_video runs
    stylizer.stylize(batch)  # trace and warm up
    steps = max(1, frames // batch_size)
    start = time.perf_counter()
    for _ in range(steps):
        stylizer.stylize(batch)
    return steps * batch_size / (time.perf_counter() - start)


def end_to_end_fps(net, clip, out, frames, batch_size):
    start = time.perf_counter()
    video.stylize_video(clip, out, model=net, batch_size=batch_size, smoothing=0.7, verbose=0)
    return frames / (time.perf_counter() - start)


def flicker_pair(clip, folder, model):
    """Flicker of the stylized clip without and with smoothing 0.7."""
    source, _ = ffmpeg.read_video(clip)
    figures = []
    for smoothing in (0.0, 0.7):
        out = folder / f"flicker_{smoothing}.mp4"
        video.stylize_video(clip, out, model=model(), smoothing=smoothing, verbose=0)
        figures.append(temporal.flicker(source, ffmpeg.read_video(out)[0]))
    return figures


def noisy_stylizer():
    rng = np.random.default_rng(0)
    return lambda batch: np.clip(0.8 * batch + rng.normal(0, 12, batch.shape), 0, 255)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--sizes", default="640x480,1280x720")
    parser.add_argument(
        "--style", help="a bundled style (its width and weights) instead of a random full-width net"
    )
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args()
    from bench_report import environment, write_json

    report = {"environment": environment(), "frames": args.frames, "speed": [], "flicker": {}}
    report["batch_size"] = args.batch_size
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, {os.cpu_count()} CPUs")
    keras.utils.set_random_seed(0)
    net = styles.load_style(args.style) if args.style else TransformerNet(width=1.0)
    print(f"network: {args.style or 'random weights'}, width {net.width}")
    report["network"] = {"style": args.style or "random weights", "width": net.width}
    report["network"]["precision"] = fast.FastStylizer(net).precision  # what stylize_video runs
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.split("x"))
            clip = folder / f"clip_{size}.mp4"
            make_clip(clip, width, height, args.frames)
            alone = network_fps(net, width, height, args.frames, args.batch_size)
            full = end_to_end_fps(
                net, clip, folder / f"out_{size}.mp4", args.frames, args.batch_size
            )
            print(
                f"{size}: network {alone:.2f} frames/s, stylize_video {full:.2f} frames/s "
                f"(batch {args.batch_size}, {args.frames} frames)"
            )
            report["speed"].append(
                {"size": size, "network_fps": alone, "stylize_video_fps": full},
            )
        clip = folder / "flicker.mp4"
        make_clip(clip, 160, 120, 24)
        before, after = flicker_pair(clip, folder, noisy_stylizer)
        print(f"flicker, noisy stylizer 160x120: {before:.2f} -> {after:.2f} with smoothing 0.7")
        report["flicker"]["noisy_stylizer"] = {"smoothing_0": before, "smoothing_0.7": after}
        make_clip(clip, 160, 120, 24, noise=6)
        before, after = flicker_pair(clip, folder, lambda: net)
        print(
            f"flicker, TransformerNet, noisy input: {before:.2f} -> {after:.2f} with smoothing 0.7"
        )
        report["flicker"]["network_noisy_input"] = {"smoothing_0": before, "smoothing_0.7": after}
        report["flicker"]["clip"] = "160x120, 24 frames"
    if args.out:
        write_json(report, args.out)


if __name__ == "__main__":
    main()
