"""The `keras-style` command line: a thin argparse layer over `keras_style.stylize()`.

Exit codes: 0 on success, 2 on bad input or options (one clear line on
stderr), 130 when interrupted (nothing half-written is left behind).
"""

import argparse
import os
import sys

from keras_style.core import process
from keras_style.slow.options import DEFAULTS as SLOW
from keras_style.slow.options import OPTIMIZERS


def _csv_floats(text):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _tile_size(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    return value or None


def _add_stylize(subparsers):
    p = subparsers.add_parser(
        "stylize",
        help="stylize a photo with paintings (slow, iterative) or a trained network (fast)",
        description="Slow path: keras-style stylize PHOTO PAINTING [PAINTING ...] -o OUT.png. "
        "Fast path: keras-style stylize PHOTO --model model.keras -o OUT.png, or "
        "--style NAME for a bundled style.",
    )
    p.add_argument("content", help="photo to stylize")
    p.add_argument("styles", nargs="*", help="painting(s) whose style to transfer")
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .webp)")
    p.add_argument("--model", help="trained fast network (.keras) instead of paintings")
    p.add_argument("--style", dest="style_name", help="bundled pretrained style name")
    p.add_argument(
        "--size", type=int, default=SLOW.size, help="output long side in pixels (slow path)"
    )
    p.add_argument("--iterations", type=int, help="iterations per pyramid level (slow path)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=SLOW.optimizer)
    p.add_argument(
        "--learning-rate", type=float, default=SLOW.learning_rate, help="Adam step (pixels)"
    )
    p.add_argument(
        "--init",
        default=SLOW.init,
        help="color_matched (the photo in the painting's colours), content, noise, or an image",
    )
    p.add_argument("--seed", type=int, help="seed for noise initialisation")
    p.add_argument("--style-weights", type=_csv_floats, help="blend weights, e.g. 0.7,0.3")
    p.add_argument(
        "--style-scale", type=float, default=SLOW.style_scale, help="style feature size factor"
    )
    p.add_argument("--no-multiscale", action="store_true", help="optimise at full size only")
    p.add_argument(
        "--tile-size",
        type=_tile_size,
        default=SLOW.tile_size,
        help="compute the loss in tiles of about this many pixels above it (bounded memory; "
        "0: never tile)",
    )
    p.add_argument("--preserve-color", action="store_true", help="keep the photo's colours")
    p.add_argument("--content-weight", type=float)
    p.add_argument("--style-weight", type=float)
    p.add_argument("--tv-weight", type=float)
    p.add_argument("--backbone", choices=("vgg19", "vgg16"), default="vgg19")
    p.add_argument("--vgg-weights", default="imagenet", help="local VGG weights file")
    p.add_argument("--strength", type=float, default=1.0, help="fast path: 0 photo .. 1 style")
    p.add_argument("--max-size", type=int, help="fast path: shrink the photo to this long side")
    p.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="compute precision; auto = bfloat16 on GPUs and CPUs with bfloat16 instructions "
        "(~2x faster), else float32",
    )
    p.add_argument("--save-every", type=int, help="write intermediate images every N steps")
    p.add_argument("--intermediate-dir", help="folder for intermediate images")
    p.add_argument("--overwrite-input", action="store_true", help="allow -o to be an input file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_stylize)


def _run_stylize(args):
    from keras_style import api

    if args.model and args.style_name:
        raise ValueError("use either --model or --style, not both")
    if (args.model or args.style_name) and args.styles:
        raise ValueError("paintings are only used by the slow path; drop them or --model/--style")
    if not (args.model or args.style_name or args.styles):
        raise ValueError("give at least one painting, or --model, or --style")
    style = args.style_name or args.styles or None
    api.stylize(
        args.content,
        style,
        model=args.model,
        style_weights=args.style_weights,
        size=args.size,
        iterations=args.iterations,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        init=args.init,
        seed=args.seed,
        style_scale=args.style_scale,
        multiscale=not args.no_multiscale,
        tile_size=args.tile_size,
        preserve_color=args.preserve_color,
        strength=args.strength,
        max_size=args.max_size,
        precision=args.precision,
        backbone=args.backbone,
        vgg_weights=args.vgg_weights,
        content_weight=args.content_weight,
        style_weight=args.style_weight,
        tv_weight=args.tv_weight,
        output=args.output,
        overwrite_input=args.overwrite_input,
        save_every=args.save_every,
        intermediate_dir=args.intermediate_dir,
        verbose=0 if args.quiet else 1,
    )
    print(f"wrote {args.output}")


def _add_video(subparsers):
    p = subparsers.add_parser(
        "video",
        help="stylize every frame of a video with a trained network (keeps fps and audio)",
        description="keras-style video IN.mp4 -o OUT.mp4 --style NAME (or --model M.keras).",
    )
    p.add_argument("input", help="video to stylize")
    p.add_argument("-o", "--output", required=True, help="output video (.mp4, .mov, .mkv, .webm)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--style", dest="style_name", help="bundled pretrained style name")
    source.add_argument("--model", help="trained fast network (.keras)")
    p.add_argument("--max-size", type=int, help="shrink frames to this long side")
    p.add_argument("--batch-size", type=int, default=4, help="frames per network call")
    p.add_argument(
        "--smoothing", type=float, default=0.0, help="flicker reduction in still areas, 0 .. <1"
    )
    p.add_argument("--preserve-color", action="store_true", help="keep the video's colours")
    p.add_argument("--strength", type=float, default=1.0, help="0 video .. 1 style")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_video)


def _run_video(args):
    from keras_style.fast import video

    video.stylize_video(
        args.input,
        args.output,
        style=args.style_name,
        model=args.model,
        max_size=args.max_size,
        batch_size=args.batch_size,
        smoothing=args.smoothing,
        preserve_color=args.preserve_color,
        strength=args.strength,
        verbose=0 if args.quiet else 1,
    )
    print(f"wrote {args.output}")


def _add_list_styles(subparsers):
    p = subparsers.add_parser("list-styles", help="list the bundled pretrained styles")
    p.set_defaults(run=_run_list_styles)


def _run_list_styles(args):
    from keras_style.fast import styles

    names = styles.list_styles()
    if not names:
        print("no bundled styles are installed", file=sys.stderr)
    for name in names:
        painting = styles.style_card(name).get("painting", "")
        title = painting.get("title", "") if isinstance(painting, dict) else painting
        print(f"{name}\t{title}" if title else name)


def _add_serve(subparsers):
    p = subparsers.add_parser(
        "serve",
        help="a local web page (and HTTP API) to stylize photos in the browser",
        description="keras-style serve [--port 8000] [--style NAME] [--model FILE]: starts a "
        "local web app and prints its URL (needs the serve extra).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--style", action="append", default=[], help="bundled style to preload")
    p.add_argument(
        "--model", action="append", default=[], help=".keras or .tflite model to offer too"
    )
    p.add_argument("--max-size", type=int, default=1024, help="largest output long side")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload")
    p.add_argument("--backbone", choices=("vgg19", "vgg16"), default="vgg19", help="slow method")
    p.add_argument("--vgg-weights", default="imagenet", help="slow method: local VGG weights")
    p.set_defaults(run=_run_serve)


def _run_serve(args):
    try:
        from keras_style.serve import app
    except ImportError as e:
        raise ValueError(
            f'serve needs the serve extra: pip install "keras-style[serve]" ({e})'
        ) from None
    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    if args.max_size < 16 or args.max_upload_mb <= 0:
        raise ValueError("--max-size must be at least 16 and --max-upload-mb positive")
    config = app.ServeConfig(
        max_size=args.max_size,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        model_files=tuple(args.model),
        preload=tuple(args.style),
        backbone=args.backbone,
        vgg_weights=args.vgg_weights,
    )
    app.serve(config, host=args.host, port=args.port)


def build_parser():
    """The argparse parser of the `keras-style` command."""
    parser = argparse.ArgumentParser(prog="keras-style", description="Neural style transfer.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_stylize(subparsers)
    _add_video(subparsers)
    _add_list_styles(subparsers)
    _add_serve(subparsers)
    return parser


def main(argv=None):
    """Entry point of the `keras-style` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    with process.native_stderr_silenced():
        return _run(args)


def _run(args):
    from keras_style.core.vgg import WeightsUnavailableError

    return process.run_cleanly(
        lambda: args.run(args),
        prefix="keras-style: error",
        bad_input=(ValueError, WeightsUnavailableError),
        interrupted="keras-style: interrupted; no output written",
    )


if __name__ == "__main__":
    sys.exit(main())
