"""The static in-browser page: builder checks, and the built page in headless Chromium."""

import json
import shutil
from pathlib import Path

import browser
import numpy as np
import pytest
from PIL import Image

from keras_style import web_page
from keras_style.core import images, metrics
from keras_style.fast.stylizer import FastStylizer

EXAMPLES = Path(images.__file__).parents[1] / "assets" / "examples"


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="Unknown styles"):
        web_page.build_web_page(tmp_path / "a", ["picasso"], runtime_dir=tmp_path)
    with pytest.raises(ValueError, match="multiples of 4"):
        web_page.build_web_page(tmp_path / "a", ["udnie"], sizes=[250], runtime_dir=tmp_path)
    with pytest.raises(ValueError, match="no LiteRT.js runtime"):
        web_page.build_web_page(tmp_path / "a", ["udnie"], runtime_dir=tmp_path)
    occupied = tmp_path / "docs"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a built page"):
        web_page.build_web_page(occupied, ["udnie"], runtime_dir=tmp_path)
    assert (occupied / "keep.txt").read_text() == "mine"


def test_missing_npm_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        web_page.fetch_runtime(tmp_path, npm="no-such-npm-binary")


def test_page_code_is_small():
    sources = [web_page.PAGE_DIR / "index.html", web_page.PAGE_DIR / "page.js"]
    sources += [web_page.SHARED_DIR / "common.js", web_page.SHARED_DIR / "style.css"]
    assert sum(p.stat().st_size for p in sources) <= web_page.MAX_PAGE_CODE_BYTES
    for path in sources:
        assert "cdn" not in path.read_text().lower()


SIZE = 256


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A page with one style at one size, its runtime fetched with npm (cached by npm)."""
    browser.require_chromium()
    if shutil.which("npm") is None:
        pytest.skip("needs npm (apt package npm; .ci/run installs it)")
    out = tmp_path_factory.mktemp("web") / "page"
    manifest = web_page.build_web_page(out, ["udnie"], sizes=[SIZE])
    return out, manifest


@pytest.mark.slow
def test_built_page_layout(built):
    out, manifest = built
    assert manifest["sizes"] == [SIZE] and manifest["runtime"] == web_page.LITERTJS_VERSION
    assert json.loads((out / web_page.MANIFEST).read_text()) == manifest
    assert (out / "models" / f"udnie_{SIZE}.tflite").stat().st_size < 2_000_000
    assert (out / "litert" / "core" / "wasm" / "litert_wasm_internal.wasm").is_file()
    assert web_page.page_code_bytes(out) <= web_page.MAX_PAGE_CODE_BYTES
    for name in ("index.html", "page.js", "common.js"):
        assert "http" not in (out / name).read_text().replace("http-equiv", "")


@pytest.fixture(scope="module")
def page(built):
    out, _ = built
    with browser.static_server(out) as url, browser.chromium() as driver:
        driver.get(url + "/")
        browser.wait_for(driver, "document.body.dataset.ready === '1'", 120, "the runtime")
        yield driver


@pytest.mark.slow
def test_in_browser_result_matches_keras(page, tmp_path):
    photo = tmp_path / "square.png"
    square = Image.open(EXAMPLES / "chelsea.jpg").convert("RGB").resize((SIZE, SIZE))
    square.save(photo)
    browser.upload(page, "photo-input", photo)
    browser.wait_for(page, "document.body.dataset.done === '1'", 300, "the result")
    assert "WebAssembly" in page.execute_script(
        "return document.getElementById('runtime').textContent;"
    )
    out = browser.element_pixels(page, "result").astype(np.float32)
    reference = FastStylizer("udnie", precision="float32").stylize(images.load_image(photo))
    assert out.shape == reference.shape == (SIZE, SIZE, 3)
    psnr = metrics.psnr(out, reference)
    browser.record("in_browser_float16_psnr_db_vs_keras_float32", round(float(psnr), 2))
    assert psnr >= 30
    # Strength and kept colours are computed in the page: the same as FastStylizer's.
    page.execute_script(
        "document.getElementById('strength').value = '50';"
        "document.getElementById('preserve-color').checked = true;"
        "document.getElementById('run').click();"
    )
    browser.wait_for(page, "document.body.dataset.done === '2'", 300, "the blended result")
    blended = browser.element_pixels(page, "result").astype(np.float32)
    page.execute_script(
        "document.getElementById('strength').value = '100';"
        "document.getElementById('preserve-color').checked = false;"
    )
    expected = FastStylizer("udnie", precision="float32").stylize(
        images.load_image(photo), strength=0.5, preserve_color=True
    )
    assert metrics.psnr(blended, expected) >= 30


@pytest.mark.slow
def test_in_browser_page_resizes_other_shapes_and_shows_bad_uploads(page, tmp_path):
    browser.upload(page, "photo-input", EXAMPLES / "chelsea.jpg")  # 451x300, not square
    browser.wait_for(page, "document.body.dataset.done === '3'", 300, "the third result")
    assert browser.element_pixels(page, "result").shape == (170, SIZE, 3)
    browser.screenshot(page, "browser_page.png")
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    browser.upload(page, "photo-input", fake)
    browser.wait_for(page, "document.getElementById('message').className.includes('error')", 60)
    assert "not an image" in browser.message_text(page)


def test_binary_refuses_bad_flags_with_exit_2(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    for flags in (["--styles", "picasso"], ["--sizes", "big"]):
        result = subprocess.run(
            [sys.executable, "-m", "export.web_page", "--out", str(tmp_path / "w"), *flags],
            capture_output=True,
            text=True,
            cwd=root,
            timeout=300,
        )
        assert result.returncode == 2, result.stderr[-1000:]
        assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "w").exists()
