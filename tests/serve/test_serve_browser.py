"""The served page in Debian's headless Chromium: upload, result pixels, messages, screenshots."""

from pathlib import Path

import browser
import numpy as np
import pytest
from PIL import Image

from keras_style.core import images, metrics
from keras_style.fast.stylizer import FastStylizer

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.slow

EXAMPLES = Path(images.__file__).parents[1] / "assets" / "examples"
#: The real VGG16 of ../shared, when present, makes the slow-method screenshot a real one.
SHARED_VGG16 = next(
    (
        p / "shared/weights/vgg16_hed_notop_fp16.weights.h5"
        for p in Path(__file__).resolve().parents[2:5]
        if (p / "shared/weights/vgg16_hed_notop_fp16.weights.h5").is_file()
    ),
    Path("missing"),
)


@pytest.fixture(scope="module")
def page():
    """(driver, base URL) of a served app in Chromium (slow method: the real VGG16 if present)."""
    browser.require_chromium()
    from keras_style.serve import app as serve_app

    real = SHARED_VGG16.is_file()
    config = serve_app.ServeConfig(
        max_size=512,
        max_upload_bytes=1_000_000,
        max_pixels=4_000_000,
        backbone="vgg16",
        vgg_weights=str(SHARED_VGG16) if real else None,
        preload=("starry_night",),
    )
    with browser.uvicorn_server(serve_app.create_app(config)) as url, browser.chromium() as d:
        yield d, url


def _open(driver, url):
    driver.get(url + "/")
    browser.wait_for(driver, "document.querySelectorAll('.style-card').length >= 4", 30)


def _pick(driver, style):
    driver.execute_script(f"document.querySelector('[data-style={style}]').click();")


def test_upload_gives_the_keras_result(page, tmp_path):
    driver, url = page
    _open(driver, url)
    _pick(driver, "starry_night")
    photo = tmp_path / "chelsea.png"
    Image.open(EXAMPLES / "chelsea.jpg").convert("RGB").save(photo)
    browser.upload(driver, "photo-input", photo)
    browser.wait_for(driver, "document.body.dataset.done === '1'", 120, "the result")
    out = browser.element_pixels(driver, "result").astype(np.float32)
    reference = FastStylizer("starry_night", precision="float32").stylize(images.load_image(photo))
    assert out.shape == reference.shape
    psnr = metrics.psnr(out, reference)
    browser.record("served_page_psnr_db_vs_keras_float32", round(float(psnr), 2))
    assert psnr >= 45
    assert "s" in driver.execute_script("return document.getElementById('timing').textContent;")
    browser.screenshot(driver, "serve_page.png")


def test_bad_upload_shows_its_message(page, tmp_path):
    driver, url = page
    _open(driver, url)
    fake = tmp_path / "notes.jpg"
    fake.write_text("these are not pixels")
    browser.upload(driver, "photo-input", fake)
    browser.wait_for(driver, "document.getElementById('message').className.includes('error')", 60)
    assert "not a readable image file" in browser.message_text(driver)
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(1_200_000))
    browser.upload(driver, "photo-input", big)
    browser.wait_for(driver, "document.getElementById('message').textContent.includes('up to')")
    assert "accepts up to 1.0 MB" in browser.message_text(driver)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (5000, 5000)).save(bomb, optimize=True)  # 25 Mpx in a few KB
    browser.upload(driver, "photo-input", bomb)
    browser.wait_for(driver, "document.getElementById('message').textContent.includes('large')")
    assert "5000x5000" in browser.message_text(driver)


def test_slow_method_progress_and_result(page, tmp_path):
    driver, url = page
    _open(driver, url)
    driver.execute_script("document.getElementById('tab-slow').click();")
    browser.upload(driver, "slow-photo-input", EXAMPLES / "chelsea.jpg")
    browser.upload(driver, "slow-painting-input", EXAMPLES / "starry_night.jpg")
    driver.execute_script(
        "document.getElementById('slow-size').value = '256';"
        "document.getElementById('slow-iterations').value = '20';"
        "document.getElementById('slow-run').click();"
    )
    browser.wait_for(
        driver, "document.getElementById('slow-status').textContent.includes('running')", 120
    )
    browser.wait_for(driver, "document.body.dataset.slowDone === '1'", 600, "the slow result")
    assert "20 / 20" in browser.message_text(driver, "slow-status")
    assert browser.element_pixels(driver, "slow-result").shape == (170, 256, 3)
    browser.screenshot(driver, "serve_slow.png")
