"""Shared plumbing of the export binaries: clean errors and exit codes."""

import contextlib
import sys

from absl import logging

from keras_style.core import process


def run_cleanly(function, quiet_native_logs=False):
    """Calls `function()`; bad input exits with code 2 and export failures with 1, one line each.

    Args:
        function: the binary's work, raising `ValueError` on bad input and
            `ExportError` when a converted model cannot ship.
        quiet_native_logs: keep TensorFlow's C++ start-up lines off stderr
            (see `keras_style.core.process.native_stderr_silenced`).
    """
    from keras_style.export.ops import ExportError

    quiet = process.native_stderr_silenced() if quiet_native_logs else contextlib.nullcontext()
    with quiet:
        code = process.run_cleanly(function, failures={ExportError: "export failed"})
    if code:
        sys.exit(code)


def log(message):
    """Progress messages of the library, through absl logging."""
    logging.info(message)
