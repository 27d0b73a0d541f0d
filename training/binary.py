"""Shared entry-point plumbing of the training binaries: arguments, logs and clean errors."""

import contextlib
import logging
import shlex
import signal
import sys
from pathlib import Path

from absl import app

from keras_style.core import process

#: What a resumable binary prints when Ctrl-C stops it (exit code 130).
RESUMABLE_INTERRUPTED = (
    "interrupted: rerun the same command to resume from the newest checkpoint of the work dir"
)


def run_cleanly(argv, run, quiet_native_logs=False, interrupted=None):
    """Runs a binary's `run()`; bad input exits with code 2 and one line on stderr.

    Args:
        argv: the absl `argv` (only the program name is accepted).
        run: the binary's work, raising `ValueError` on bad input or options.
        quiet_native_logs: keep TensorFlow's C++ start-up lines off stderr
            (see `keras_style.core.process.native_stderr_silenced`).
        interrupted: the line printed when Ctrl-C stops the binary (exit code
            130 instead of a traceback); None lets `KeyboardInterrupt` propagate.
            Given, SIGINT raises `KeyboardInterrupt` even where the process
            started with it ignored (a job started with `&` from a script, or
            under nohup), so `kill -INT` stops a background run cleanly too.
    """
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if interrupted is not None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    logging.getLogger("keras_style").setLevel(logging.INFO)
    quiet = process.native_stderr_silenced() if quiet_native_logs else contextlib.nullcontext()
    with quiet:
        code = process.run_cleanly(run, interrupted=interrupted)
    if code:
        sys.exit(code)


def parse_models(specs):
    """{name: path} from NAME=PATH strings."""
    models = {}
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--model must be NAME=PATH, got {spec!r}")
        if not Path(path).is_file():
            raise ValueError(f"Model file not found: {path}")
        models[name] = path
    if not models:
        raise ValueError("Give at least one --model NAME=PATH")
    return models


def command_line():
    """How this binary was started, as one shell line (`python -m package.module --flags`)."""
    main = sys.modules["__main__"]
    module = getattr(main.__spec__, "name", None) if getattr(main, "__spec__", None) else None
    start = ["python", "-m", module] if module else ["python", sys.argv[0]]
    return shlex.join([*start, *sys.argv[1:]])
