"""Output folders of the exporters, replaced atomically: never a half export.

Outputs are staged in a temporary folder beside `out_dir` and renamed into
place only when everything succeeded.
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def check_out_dir(out_dir, marker):
    """`out_dir` as a Path, if it is new, empty, or a previous export (it holds `marker`).

    Raises:
        ValueError: if the path or its parent is not a folder, or it holds other files.
    """
    out = Path(out_dir)
    if out.parent.exists() and not out.parent.is_dir():
        raise ValueError(f"Output parent is not a folder: {out.parent}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"Output path exists and is not a folder: {out}")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).exists():
        raise ValueError(
            f"Refusing to overwrite {out}: it is not empty and holds no previous export "
            f"({marker}); choose a new or empty folder"
        )
    return out


@contextlib.contextmanager
def staged_dir(out_dir, marker):
    """Yields a temporary folder that replaces `out_dir` atomically on success."""
    out = check_out_dir(out_dir, marker)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = tmp.with_name(tmp.name + ".old")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
