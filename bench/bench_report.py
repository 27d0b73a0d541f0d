"""The machine and command record that every benchmark's JSON output starts with.

A figure in `docs/` must come from a committed JSON file written by the bench
command the page names; `environment()` records what that figure depends on
(the command line, the CPU model and vector flags, the core count, the load
average when the benchmark started and the package versions) and `write_json`
writes the report atomically through `keras_style.core.jsonio` (a killed benchmark leaves
no half file).

    from bench_report import environment, write_json

    report = {"environment": environment(), ...}
    write_json(report, args.out)
"""

import importlib.metadata
import os
import platform
import shlex
import sys
import time
from pathlib import Path

#: /proc/cpuinfo flag prefixes that decide which kernels TensorFlow/XNNPACK run.
CPU_FLAG_PREFIXES = ("amx", "avx512", "avx_vnni", "avx2", "fma", "f16c")

#: Packages whose versions change the figures.
PACKAGES = ("keras-style", "keras", "tensorflow", "ai-edge-litert", "numpy", "jax", "jaxlib")


def cpu():
    """{"model", "flags"}: the CPU's name and its vector-unit flags from /proc/cpuinfo."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = sorted(v for v in value.split() if v.startswith(CPU_FLAG_PREFIXES))
    except OSError:
        pass
    return {"model": model, "flags": flags}


def versions():
    """{package: version} of the installed `PACKAGES` (missing ones left out)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def environment():
    """What a benchmark's figures depend on; call it before the benchmark loads the CPU."""
    return {
        "command": "python " + shlex.join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": cpu(),
        "cpu_count": os.cpu_count(),
        "load_average_start": list(os.getloadavg()),
        "nice": os.nice(0),
        "python": platform.python_version(),
        "packages": versions(),
    }


def write_json(report, path):
    """Writes `report` (with the load average at the end added) to `path` atomically.

    Non-finite numbers become null (`keras_style.core.jsonio`, as every report of the package).
    """
    from keras_style.core import jsonio

    report = dict(report)
    report.setdefault("environment", {})["load_average_end"] = list(os.getloadavg())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    jsonio.write_json(path, report)
    print(f"wrote {path}", flush=True)
    return Path(path)
