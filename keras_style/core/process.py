"""Running a command cleanly: one line on stderr per failure, an exit code, no native noise.

Shared by the `keras-style` console script and the absl binaries under
`training/` and `export/`, so each failure reads and exits the same way
everywhere: bad input or options exit with 2, declared failures (e.g. an
export that produced a model which cannot ship) with 1, Ctrl-C with 130 where
the command says so.
"""

import contextlib
import os
import sys

#: Exit code of bad input or options.
EXIT_BAD_INPUT = 2
#: Exit code of a declared failure (`failures=` of `run_cleanly`).
EXIT_FAILURE = 1
#: Exit code of an interrupted command (128 + SIGINT).
EXIT_INTERRUPTED = 130


def run_cleanly(run, *, prefix="error", bad_input=(ValueError,), failures=None, interrupted=None):
    """Calls `run()` and turns its expected failures into one stderr line and an exit code.

    Args:
        run: the command's work, a function of no arguments.
        prefix: what starts the stderr line of bad input ("error: ...").
        bad_input: exception types meaning bad input or options (exit 2).
        failures: `{exception type: prefix}` of failures that are not the
            user's input (exit 1), e.g. `{ExportError: "export failed"}`.
        interrupted: the line printed on Ctrl-C (exit 130); None lets
            `KeyboardInterrupt` propagate.

    Returns:
        0 on success, else the exit code (2, 1 or 130).
    """
    failures = failures or {}
    try:
        run()
    except tuple(bad_input) as e:
        print(f"{prefix}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except tuple(failures) as e:
        label = next(v for k, v in failures.items() if isinstance(e, k))
        print(f"{label}: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _is_process_stderr(stream):
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


@contextlib.contextmanager
def native_stderr_silenced():
    """Native (C++) writes to stderr go to /dev/null; Python's `sys.stderr` still works.

    TensorFlow logs informational lines ("oneDNN custom operations are on",
    "Could not find cuda drivers") from C++ before its log level is read, so
    `TF_CPP_MIN_LOG_LEVEL` cannot hide them, while the command line promises
    one clear line on stderr. File descriptor 2 is pointed at /dev/null and
    `sys.stderr` at a duplicate of the real stderr for the command's duration.
    Set `KERAS_STYLE_NATIVE_LOGS=1` to keep the native lines (debugging).
    """
    if os.environ.get("KERAS_STYLE_NATIVE_LOGS") or not _is_process_stderr(sys.stderr):
        yield  # debugging, or stderr already captured (e.g. by a test harness)
        return
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)
