"""Speed of the in-browser page in headless Chromium: time to first result, per-image time.

    python bench/bench_web_page.py --styles udnie --sizes 256,512 --out docs/web/web_page_bench.json

Builds the page with `keras_style.web_page.build_web_page` (LiteRT.js from npm,
or `--litertjs_dir`), serves it on a loopback port, and for each model size
opens it in a fresh headless Chromium (Debian's, the tests' flags: no GPU, so
LiteRT.js runs on WebAssembly), uploads a photo and records the time from
navigation start to the first result (runtime download and start-up, model
download and compile, first inference), then stylizes it `--repeats` more
times and records the median per-image time. The CPU is shared with other
jobs: figures are noisy; the load average at the start is recorded.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import browser  # noqa: E402  (tests/browser.py: the tests' Chromium set-up)

from keras_style import web_page  # noqa: E402

PHOTO = ROOT / "keras_style" / "assets" / "examples" / "chelsea.jpg"


def measure(url, size, repeats):
    with browser.chromium() as driver:
        driver.get(url + "/")
        browser.wait_for(driver, "document.body.dataset.ready === '1'", 120, "the runtime")
        driver.execute_script(f"document.getElementById('max-size').value = '{size}';")
        browser.upload(driver, "photo-input", PHOTO)
        browser.wait_for(driver, "document.body.dataset.done === '1'", 300, "the first result")
        first = float(driver.execute_script("return document.body.dataset.firstResultMs;"))
        first_image = float(driver.execute_script("return document.body.dataset.lastMs;"))
        runtime = driver.execute_script("return document.getElementById('runtime').textContent;")
        times = []
        for i in range(repeats):
            driver.execute_script("document.getElementById('run').click();")
            browser.wait_for(driver, f"document.body.dataset.done === '{i + 2}'", 300, "a result")
            times.append(float(driver.execute_script("return document.body.dataset.lastMs;")))
    return {
        "size": size,
        "runtime": runtime,
        "first_result_ms_from_navigation": first,
        "first_image_ms": first_image,
        "per_image_ms_median": statistics.median(times),
        "per_image_ms": times,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", default="udnie")
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--litertjs_dir", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "page"
        manifest = web_page.build_web_page(
            out, args.styles.split(","), sizes, runtime_dir=args.litertjs_dir
        )
        with browser.static_server(out) as url:
            results = [measure(url, size, args.repeats) for size in sizes]
        code = web_page.page_code_bytes(out)
    report = {
        "command": "python " + " ".join(sys.argv),
        "photo": PHOTO.name,
        "styles": args.styles.split(","),
        "litertjs": manifest["runtime"],
        "page_code_bytes": code,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": round(load, 2),
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
