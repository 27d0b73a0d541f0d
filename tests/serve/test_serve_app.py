"""The `keras-style serve` HTTP API through Starlette's test client (no network, bundled styles)."""

import io
import threading
import time
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")
with warnings.catch_warnings():  # Starlette would like httpx2 for its test client
    warnings.filterwarnings("ignore", message="Using `httpx`")
    from starlette.testclient import TestClient

from conftest import make_painting, make_photo  # noqa: E402

from keras_style.core import images, metrics  # noqa: E402
from keras_style.fast.stylizer import FastStylizer  # noqa: E402
from keras_style.serve import app as serve_app  # noqa: E402


def encode(array, fmt="PNG", **options):
    buffer = io.BytesIO()
    image = array if isinstance(array, Image.Image) else Image.fromarray(array)
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


PHOTO = make_photo(40, 56).astype(np.uint8)


@pytest.fixture(scope="module")
def client():
    config = serve_app.ServeConfig(
        max_size=256, max_upload_bytes=200_000, max_pixels=1_000_000, vgg_weights=None
    )
    with TestClient(serve_app.create_app(config)) as c:
        yield c


def png_of(response):
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def assert_error(response, status, *words):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert "Traceback" not in message
    for word in words:
        assert word in message, message
    return message


def test_styles_lists_the_bundled_paintings(client):
    styles = client.get("/api/styles").json()
    by_name = {s["name"]: s for s in styles}
    assert {"great_wave", "starry_night", "udnie", "woman_with_hat_matisse"} <= set(by_name)
    assert by_name["starry_night"]["artist"] == "Vincent van Gogh"
    assert by_name["starry_night"]["year"] == "1889"
    thumb = client.get(by_name["udnie"]["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


def test_stylize_raw_body_matches_fast_stylizer(client):
    reference = FastStylizer("udnie", precision="float32").stylize(PHOTO.astype(np.float32))
    out = png_of(client.post("/api/stylize?style=udnie", content=encode(PHOTO)))
    assert out.shape == PHOTO.shape
    assert metrics.psnr(out.astype(np.float32), reference) > 45


def test_stylize_multipart_and_options(client):
    files = {"photo": ("p.png", encode(PHOTO), "image/png")}
    response = client.post(
        "/api/stylize?style=udnie&strength=0&preserve_color=1&max_size=28", files=files
    )
    out = png_of(response)
    assert out.shape == (20, 28, 3)  # shrunk to max_size; strength 0 = the photo itself
    expected = images.resize(PHOTO.astype(np.float32), (20, 28))
    assert np.abs(out.astype(np.float32) - expected).max() <= 1.0
    assert response.headers["x-image-size"] == "28x20"


def _odd_photos():
    gray = Image.fromarray(PHOTO[..., 0])
    cmyk = Image.fromarray(PHOTO).convert("CMYK")
    deep = Image.fromarray(PHOTO[..., 0].astype(np.uint16) * 257)  # mode I;16
    rotated = Image.fromarray(PHOTO)
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    frames = [Image.fromarray(PHOTO), Image.fromarray(255 - PHOTO)]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:])
    return {
        "grayscale": (encode(gray), PHOTO.shape[:2]),
        "cmyk": (encode(cmyk, "JPEG"), PHOTO.shape[:2]),
        "16-bit": (encode(deep), PHOTO.shape[:2]),
        "exif-rotated": (encode(rotated, "JPEG", exif=exif), PHOTO.shape[1::-1]),
        "animated": (animated.getvalue(), PHOTO.shape[:2]),
        "webp": (encode(PHOTO, "WEBP"), PHOTO.shape[:2]),
        "tiny": (encode(PHOTO[:2, :3]), (2, 3)),
        "thin": (encode(np.full((3, 300, 3), 90, np.uint8)), (3, 256)),
    }


@pytest.mark.parametrize("kind", list(_odd_photos()))
def test_odd_photos_give_a_picture(client, kind):
    data, shape = _odd_photos()[kind]
    out = png_of(client.post("/api/stylize?style=udnie", content=data))
    assert out.shape == (*shape, 3)


def _bomb():
    """A 5000x5000 PNG (25 Mpx, over the 1 Mpx limit) in a few kilobytes."""
    return encode(Image.new("1", (5000, 5000)), optimize=True)


@pytest.mark.parametrize(
    "body, status, words",
    [
        (b"", 400, ["empty"]),
        (b"hello, this is text", 400, ["not a readable image"]),
        (encode(PHOTO)[:200], 400, ["truncated"]),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, 400, ["image"]),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', 400, ["readable"]),
        (_bomb(), 413, ["too large", "5000x5000"]),
        (bytes(300_000), 413, ["limit"]),
    ],
    ids=["empty", "text", "truncated", "corrupt", "svg", "decompression-bomb", "too-many-bytes"],
)
def test_bad_uploads_get_a_clear_json_error(client, body, status, words):
    assert_error(client.post("/api/stylize?style=udnie", content=body), status, *words)


@pytest.mark.parametrize(
    "query, words",
    [
        ("", ["name a style"]),
        ("style=picasso", ["Unknown style", "udnie"]),
        ("style=udnie&strength=2", ["strength"]),
        ("style=udnie&strength=abc", ["strength"]),
        ("style=udnie&max_size=99999", ["max_size"]),
        ("style=udnie&preserve_color=maybe", ["preserve_color"]),
    ],
)
def test_bad_parameters_are_400(client, query, words):
    assert_error(client.post(f"/api/stylize?{query}", content=encode(PHOTO)), 400, *words)


def test_no_file_outside_the_assets(client):
    for path in ["/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2f..%2fsetup.py"]:
        response = client.get(path)
        assert response.status_code == 404
        assert "import" not in response.text
    assert_error(client.get("/api/nothing"), 404)
    assert_error(client.get("/api/stylize"), 405)


def test_page_and_its_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "keras-style" in page.text
    for asset in ("/static/app.js", "/static/common.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from a CDN


def test_full_fast_queue_answers_503_with_retry_after(client):
    server = client.app.state.server
    release = threading.Event()
    blockers = [
        server.fast.submit(release.wait, threading.Event()) for _ in range(server.fast.max_pending)
    ]
    try:
        response = client.post("/api/stylize?style=udnie", content=encode(PHOTO))
        assert_error(response, 503, "busy")
        assert int(response.headers["retry-after"]) > 0
    finally:
        release.set()
        for future in blockers:
            future.result(timeout=10)
    assert client.post("/api/stylize?style=udnie", content=encode(PHOTO)).status_code == 200


def _slow_files(photo=None):
    photo = PHOTO if photo is None else photo
    return {
        "photo": ("photo.png", encode(photo), "image/png"),
        "painting": ("painting.png", encode(make_painting(48, 48).astype(np.uint8)), "image/png"),
    }


def _wait(client, job_id, states=("done", "failed", "cancelled"), timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] in states:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {status}")


@pytest.mark.slow
def test_slow_job_progress_preview_and_result(client):
    response = client.post("/api/slow?size=64&iterations=6", files=_slow_files())
    assert response.status_code == 202
    job = response.json()
    assert job["total"] == 6
    status = _wait(client, job["id"])
    assert status["state"] == "done" and status["iteration"] == 6 and status["has_preview"]
    assert png_of(client.get(f"/api/jobs/{job['id']}/result")).shape == (46, 64, 3)
    assert png_of(client.get(f"/api/jobs/{job['id']}/preview")).shape == (46, 64, 3)


@pytest.mark.slow
def test_slow_job_cancel_and_queue_limit(client):
    server = client.app.state.server
    ids = []
    for _ in range(server.slow.max_queued):
        response = client.post("/api/slow?size=64&iterations=400", files=_slow_files())
        assert response.status_code == 202
        ids.append(response.json()["id"])
    full = client.post("/api/slow?size=64&iterations=5", files=_slow_files())
    assert_error(full, 503, "busy")
    assert int(full.headers["retry-after"]) > 0
    queued = client.get(f"/api/jobs/{ids[-1]}").json()
    assert queued["state"] == "queued" and queued["position"] >= 1
    for job_id in ids:
        assert client.delete(f"/api/jobs/{job_id}").status_code == 200
    for job_id in ids:
        status = _wait(client, job_id)
        assert status["state"] == "cancelled"
        assert status["iteration"] < status["total"]
    assert_error(client.get(f"/api/jobs/{ids[0]}/result"), 409, "cancelled")


def test_slow_job_bad_inputs(client):
    assert_error(client.post("/api/slow?size=64", content=encode(PHOTO)), 400, "multipart")
    files = _slow_files()
    files["painting"] = ("p.txt", b"not a painting", "text/plain")
    assert_error(client.post("/api/slow?size=64", files=files), 400, "the painting")
    assert_error(client.post("/api/slow?size=9999", files=_slow_files()), 400, "size")
    assert_error(client.get("/api/jobs/does-not-exist"), 404, "no such job")


def test_random_garbage_never_gives_a_500(client):
    rng = np.random.default_rng(0)
    headers_options = [{}, {"content-type": "multipart/form-data; boundary=xyz"}]
    for i in range(12):
        body = rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8).tobytes()
        if i % 3 == 0:
            body = encode(PHOTO, "JPEG")[: int(rng.integers(10, 2000))]
        response = client.post(
            "/api/stylize?style=udnie", content=body, headers=headers_options[i % 2]
        )
        assert response.status_code in (200, 400, 413), response.text
        assert response.status_code == 200 or "error" in response.json()


@pytest.mark.slow
def test_model_files_are_offered_and_loaded_once(tmp_path):
    """A .keras network and a dynamic .tflite export, named at start-up, are styles too."""
    import keras

    from keras_style.core.transformer_net import TransformerNet
    from keras_style.export import convert as export_convert

    keras.utils.set_random_seed(0)
    net = TransformerNet(width=0.25, head="clip")
    net(np.zeros((1, 32, 32, 3), np.float32))
    net.save(tmp_path / "mine.keras")
    (tmp_path / "mine_lite.tflite").write_bytes(export_convert.convert_model(net, "float32"))
    config = serve_app.ServeConfig(
        model_files=(str(tmp_path / "mine.keras"), str(tmp_path / "mine_lite.tflite"))
    )
    reference = FastStylizer(net, precision="float32").stylize(PHOTO.astype(np.float32))
    with TestClient(serve_app.create_app(config)) as c:
        kinds = {s["name"]: s["kind"] for s in c.get("/api/styles").json()}
        assert kinds["mine"] == "keras" and kinds["mine_lite"] == "tflite"
        for name in ("mine", "mine_lite"):
            out = png_of(c.post(f"/api/stylize?style={name}", content=encode(PHOTO)))
            assert metrics.psnr(out.astype(np.float32), reference) > 40
        models = c.app.state.server.models
        assert models.stylizer("mine") is models.stylizer("mine")


def test_bad_model_files_are_refused_at_start(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        serve_app.create_app(serve_app.ServeConfig(model_files=(str(tmp_path / "x.keras"),)))
    (tmp_path / "notes.txt").write_text("no")
    with pytest.raises(ValueError, match=r"\.keras or \.tflite"):
        serve_app.create_app(serve_app.ServeConfig(model_files=(str(tmp_path / "notes.txt"),)))


@pytest.mark.slow
def test_a_client_that_disconnects_frees_its_queued_job():
    import socket

    import browser

    app = serve_app.create_app(serve_app.ServeConfig())
    server = app.state.server
    calls = []
    build = server.models.stylizer
    server.models.stylizer = lambda name: (calls.append(name), build(name))[1]
    release = threading.Event()
    body = encode(PHOTO)
    with browser.uvicorn_server(app) as url:
        blocker = server.fast.submit(release.wait, threading.Event())
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as s:
            head = (
                f"POST /api/stylize?style=udnie HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}"
            )
            s.sendall(head.encode() + b"\r\n\r\n" + body)
            deadline = time.monotonic() + 10
            while server.fast.pending < 2:  # the request is queued behind the blocker
                assert time.monotonic() < deadline
                time.sleep(0.05)
        time.sleep(1.0)  # the client has gone; the server notices
        release.set()
        blocker.result(timeout=10)
        deadline = time.monotonic() + 10
        while server.fast.pending:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert calls == []  # the departed client's job never ran
        import urllib.request

        with urllib.request.urlopen(
            urllib.request.Request(url + "/api/stylize?style=udnie", body)
        ) as r:
            assert r.status == 200
        assert calls == ["udnie"]


def test_damaged_model_file_fails_at_start(tmp_path):
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.keras"):
        serve_app.create_app(serve_app.ServeConfig(model_files=(str(tmp_path / "broken.keras"),)))
    (tmp_path / "broken.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(ValueError, match="broken.tflite"):
        serve_app.create_app(serve_app.ServeConfig(model_files=(str(tmp_path / "broken.tflite"),)))
