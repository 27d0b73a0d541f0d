"""Shared plumbing of the export binaries: clean errors and exit codes."""

import sys

from absl import logging

from keras_style.export.ops import ExportError


def run_cleanly(function):
    """Calls `function()`; bad input exits with code 2 and export failures with 1, one line each."""
    try:
        function()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except ExportError as e:
        print(f"export failed: {e}", file=sys.stderr)
        sys.exit(1)


def log(message):
    """Progress messages of the library, through absl logging."""
    logging.info(message)
