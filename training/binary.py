"""Shared entry-point plumbing of the training binaries: arguments, logs and clean errors."""

import logging
import sys

from absl import app


def run_cleanly(argv, run, quiet_native_logs=False):
    """Runs a binary's `run()`; bad input exits with code 2 and one line on stderr.

    Args:
        argv: the absl `argv` (only the program name is accepted).
        run: the binary's work, raising `ValueError` on bad input or options.
        quiet_native_logs: keep TensorFlow's C++ start-up lines off stderr
            (see `keras_style.cli.native_stderr_silenced`).
    """
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.getLogger("keras_style").setLevel(logging.INFO)
    from keras_style.cli import native_stderr_silenced

    context = native_stderr_silenced() if quiet_native_logs else _nothing()
    with context:
        try:
            run()
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
