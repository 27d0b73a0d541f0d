"""Latency of `keras-style serve` end to end: upload, decode, stylize, PNG encode, download.

    python bench/bench_serve.py --style great_wave --out docs/web/serve_bench.json

Starts the server as its own process (`python -m keras_style.cli serve`), waits
for it, sends two warm-up requests, then 20 sequential requests and 20 more
from 4 concurrent clients (5 each), all with the same 1024 px JPEG photo (a
held-out photo from ../shared/data/eval_photos resized to a 1024 px long side,
or the bundled chelsea.jpg upscaled when ../shared is absent). Prints and
writes p50/p95 latency, the server's own compute time (X-Elapsed-Ms) and any
failure. The CPU is shared with other jobs: figures are noisy, the load
average at the start is recorded.
"""

import argparse
import concurrent.futures
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EVAL_PHOTOS = "../shared/data/eval_photos"


def photo_bytes(folder, long_side=1024):
    """A JPEG photo whose long side is `long_side`, and where it came from."""
    folder = Path(folder)
    candidates = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    sized = [p for p in candidates if max(Image.open(p).size) >= long_side]
    source = sized[0] if sized else ROOT / "keras_style" / "assets" / "examples" / "chelsea.jpg"
    image = Image.open(source).convert("RGB")
    scale = long_side / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue(), {"file": source.name, "size": list(image.size)}


def direct_stylizer(style, body):
    """A function timing one in-process `FastStylizer.stylize` of the photo (the baseline)."""
    sys.path.insert(0, str(ROOT))
    from keras_style.core import images
    from keras_style.fast.stylizer import FastStylizer

    stylizer = FastStylizer(style)
    photo = images.decode_image(body)

    def run():
        start = time.perf_counter()
        stylizer.stylize(photo, max_size=1024)
        return time.perf_counter() - start

    return run


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, body):
    """One POST; returns (seconds, status, server ms)."""
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=120) as r:
            r.read()
            status, server_ms = r.status, float(r.headers.get("X-Elapsed-Ms", "nan"))
    except urllib.error.HTTPError as e:
        status, server_ms = e.code, float("nan")
    except OSError:
        status, server_ms = 0, float("nan")
    return time.perf_counter() - start, status, server_ms


def summary(results):
    seconds = sorted(r[0] for r in results)
    failures = [r[1] for r in results if r[1] != 200]
    server = [r[2] for r in results if r[1] == 200]
    return {
        "requests": len(results),
        "failures": len(failures),
        "failure_statuses": failures,
        "p50_s": round(statistics.median(seconds), 3),
        "p95_s": round(seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))], 3),
        "min_s": round(seconds[0], 3),
        "max_s": round(seconds[-1], 3),
        "server_compute_p50_ms": round(statistics.median(server), 1) if server else None,
        "latencies_s": [round(r[0], 3) for r in results],
    }


def start_server(port, style, max_size):
    command = [sys.executable, "-m", "keras_style.cli", "serve", "--port", str(port)]
    command += ["--style", style, "--max-size", str(max_size)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/styles", timeout=2).read()
            return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(process.stdout.read().decode()[-2000:]) from None
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("the server did not start in 180 s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="great_wave")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max_size", type=int, default=1024)
    parser.add_argument("--eval_photos", default=EVAL_PHOTOS, help="photos to pick one from")
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args()

    body, photo = photo_bytes(args.eval_photos, 1024)
    direct = direct_stylizer(args.style, body)
    port = free_port()
    load = os.getloadavg()[0]
    process = start_server(port, args.style, args.max_size)
    url = f"http://127.0.0.1:{port}/api/stylize?style={args.style}"
    try:
        warmup = [request(url, body) for _ in range(2)]
        direct()
        sequential, in_process = [], []
        for _ in range(args.requests):  # interleaved: server request, then in-process call
            sequential.append(request(url, body))
            in_process.append(direct())
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            concurrent_results = list(pool.map(lambda _: request(url, body), range(args.requests)))
    finally:
        process.terminate()
        process.wait(timeout=30)
    report = {
        "command": "python " + " ".join(sys.argv),
        "photo": {**photo, "bytes": len(body)},
        "style": args.style,
        "server_max_size": args.max_size,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": round(load, 2),
        "warmup_s": [round(r[0], 3) for r in warmup],
        "sequential": summary(sequential),
        "in_process_fast_stylizer": {
            "what": "FastStylizer.stylize on the decoded photo in the bench process, no HTTP, "
            "no decode or encode; interleaved with the sequential requests",
            "p50_s": round(statistics.median(in_process), 3),
            "latencies_s": [round(t, 3) for t in in_process],
        },
        f"concurrent_{args.clients}_clients": summary(concurrent_results),
        "target_p50_s": 1.0,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
