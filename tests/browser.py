"""Helpers for tests that drive Debian's headless Chromium (Selenium, system browser only).

Nothing is downloaded: Selenium is pointed at /usr/bin/chromium and
/usr/bin/chromedriver (apt packages `chromium` and `chromium-driver`; `.ci/run`
installs them). Servers run in threads on free loopback ports.
"""

import base64
import contextlib
import functools
import http.server
import io
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
)
#: Where the tests leave their screenshots and figures: a temporary folder, or the folder
#: named by KERAS_STYLE_SCREENSHOT_DIR (docs/web to refresh the committed ones, see docs/web.md).
SCREENSHOT_DIR = Path(
    os.environ.get("KERAS_STYLE_SCREENSHOT_DIR")
    or Path(tempfile.gettempdir()) / "keras_style_browser_tests"
)


def require_chromium():
    """Skips the test when the system Chromium or its driver is missing (outside CI)."""
    pytest.importorskip("selenium")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(f"needs apt packages chromium and chromium-driver ({', '.join(missing)})")


@contextlib.contextmanager
def chromium():
    """A headless Chromium WebDriver with a fresh profile, closed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="keras_style_chromium_")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def uvicorn_server(app):
    """Runs an ASGI app with uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def static_server(folder):
    """Serves a folder over HTTP (like `python -m http.server`); yields its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map}
        extensions_map.update({".js": "text/javascript", ".wasm": "application/wasm"})

        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def upload(driver, input_id, path):
    """Chooses `path` in the page's (hidden) file input `input_id`."""
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.ID, input_id)
    driver.execute_script("arguments[0].style.display = 'block';", element)
    element.send_keys(str(Path(path).resolve()))
    driver.execute_script("arguments[0].style.display = '';", element)


def wait_for(driver, script, timeout=120, message="condition"):
    """Polls a JavaScript expression until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script};")
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {message}")


def element_pixels(driver, element_id):
    """The RGB pixels (uint8, H x W x 3) of an <img> or <canvas>, read back from the page."""
    data_url = driver.execute_script(
        """
        const el = document.getElementById(arguments[0]);
        if (el.tagName === 'CANVAS') return el.toDataURL('image/png');
        const c = document.createElement('canvas');
        c.width = el.naturalWidth; c.height = el.naturalHeight;
        c.getContext('2d').drawImage(el, 0, 0);
        return c.toDataURL('image/png');
        """,
        element_id,
    )
    raw = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))


def message_text(driver, element_id="message"):
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent;")


def record(key, value):
    """Adds a measured figure to docs/web/browser_tests.json (written by the browser tests)."""
    import json

    path = SCREENSHOT_DIR / "browser_tests.json"
    figures = json.loads(path.read_text()) if path.is_file() else {}
    figures[key] = value
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def screenshot(driver, name):
    """Saves a PNG screenshot of the page as docs/web/<name>."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    metrics = {"width": 1280, "height": int(height), "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        driver.save_screenshot(str(SCREENSHOT_DIR / name))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
