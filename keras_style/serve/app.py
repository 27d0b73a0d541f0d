"""The `keras-style serve` web app: a page and a small JSON/PNG HTTP API (Starlette).

API (every error is a 4xx/5xx answer with JSON `{"error": "..."}`):

* `GET /api/styles` -> `[{"name", "title", "artist", "year", "kind", "thumbnail"}, ...]`
* `GET /api/limits` -> `{"max_size", "max_upload_bytes", "max_pixels", "slow_max_size", ...}`
* `POST /api/stylize?style=NAME[&strength=0..1][&preserve_color=1][&max_size=PX]`, the
  photo's bytes as the body (or a multipart form with a `photo` file) -> `image/png`.
* `POST /api/slow?size=PX&iterations=N[&preserve_color=1]`, multipart `photo` and
  `painting` files -> 202 `{"id", "total", ...}`: a slow-method (Gatys) job; then
  `GET /api/jobs/ID` (progress), `GET /api/jobs/ID/preview` and `/result` (PNG),
  `DELETE /api/jobs/ID` (cancel).

Uploads are capped in bytes (413) and pixels (413); undecodable ones are a
400. A full queue answers 503 with `Retry-After`.
"""

import asyncio
import contextlib
import io
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from keras_style.core import images
from keras_style.serve import jobs
from keras_style.serve.models import ModelRegistry

#: The page's files (HTML, script, stylesheet, thumbnails), shipped in the package.
STATIC_DIR = Path(__file__).parent / "static"


@dataclass
class ServeConfig:
    """Limits and defaults of a server.

    Attributes:
        max_size: largest output long side (pixels); larger photos are shrunk.
        max_upload_bytes: largest accepted upload (the whole request body).
        max_pixels: largest accepted image, in pixels, checked before decoding.
        model_files: `.keras` / `.tflite` files offered besides the bundled styles
            (loaded at start-up).
        preload: bundled style names built at start-up (the first request is not slower).
        precision: `FastStylizer` precision.
        fast_queue: fast requests accepted at once (more: 503).
        slow_queue: slow-method jobs queued or running at once (more: 503).
        slow_max_size: largest slow-method output side.
        slow_max_iterations: most slow-method iterations a job may ask for.
        backbone, vgg_weights: the slow method's loss network.
        abandon_after: seconds without a status poll before a slow job is dropped.
    """

    max_size: int = 1024
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    model_files: tuple = ()
    preload: tuple = ()
    precision: str = "auto"
    fast_queue: int = 8
    slow_queue: int = 3
    slow_max_size: int = 512
    slow_max_iterations: int = 500
    backbone: str = "vgg19"
    vgg_weights: object = "imagenet"
    abandon_after: float = 30.0


class ApiError(Exception):
    """An answer other than success: HTTP status, message, extra headers."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _error_response(status, message, headers=None):
    return JSONResponse({"error": message}, status_code=status, headers=headers)


# ---------------------------------------------------------------------------
# Request parsing


def _number(params, name, kind, default, low, high):
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a number, got {text!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}, got {text}")
    return value


def _flag(params, name):
    text = params.get(name, "0").strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no", ""):
        return False
    raise ApiError(400, f"{name} must be 0 or 1, got {text!r}")


async def _read_body(request, limit):
    """The request body, refusing (413) more than `limit` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, _too_big_message(int(declared), limit))
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, _too_big_message(size, limit, at_least=True))
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "the upload was interrupted") from None
    return b"".join(chunks)


def _too_big_message(size, limit, at_least=False):
    mb = limit / (1024 * 1024)
    return f"The upload is {'over ' if at_least else ''}{size} bytes; the limit is {mb:g} MB"


async def _files(request, body, names):
    """Uploaded files by field name: a multipart form, or (one name) the raw body."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        if len(names) > 1:
            raise ApiError(400, f"send a multipart form with the files {', '.join(names)}")
        return {names[0]: body}

    async def stream():
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=4, max_fields=8).parse()
    except MultiPartException as e:
        raise ApiError(400, f"bad multipart form: {e.message}") from None
    found = {}
    for name in names:
        item = form.get(name)
        if item is None or isinstance(item, str):
            raise ApiError(400, f"the form has no {name!r} file")
        found[name] = await item.read()
    return found


def _decode(data, name, max_pixels):
    try:
        return images.decode_image(data, name=name, max_pixels=max_pixels)
    except images.ImageTooLargeError as e:
        raise ApiError(413, str(e)) from None
    except ValueError as e:
        raise ApiError(400, str(e)) from None


def encode_png(image):
    """A [0, 255] float image as PNG bytes (fast zlib level: this is a local server)."""
    buffer = io.BytesIO()
    Image.fromarray(images.to_uint8(image)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _png(image, **headers):
    return Response(encode_png(image), media_type="image/png", headers=headers)


# ---------------------------------------------------------------------------
# The app


class _Server:
    """What the routes share: configuration, models, queues."""

    def __init__(self, config):
        self.config = config
        self.models = ModelRegistry(config.model_files, config.precision)
        for name in (*config.preload, *(Path(f).stem for f in config.model_files)):
            self.models.stylizer(name)  # loaded once, now: a bad file fails at start-up
        self.fast = jobs.FastQueue(config.fast_queue)
        self.slow = jobs.SlowQueue(config.slow_queue, config.abandon_after)

    async def index(self, request):
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def styles(self, request):
        return JSONResponse(self.models.describe())

    async def limits(self, request):
        cfg = self.config
        names = ("max_size", "max_upload_bytes", "max_pixels")
        slow = ("slow_max_size", "slow_max_iterations")
        return JSONResponse({name: getattr(cfg, name) for name in names + slow})

    async def stylize(self, request):
        params = request.query_params
        name = params.get("style")
        if not name:
            raise ApiError(400, "name a style: /api/stylize?style=NAME (see /api/styles)")
        try:
            self.models.check(name)
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        strength = _number(params, "strength", float, 1.0, 0.0, 1.0)
        max_size = _number(params, "max_size", int, self.config.max_size, 16, self.config.max_size)
        preserve = _flag(params, "preserve_color")
        body = await _read_body(request, self.config.max_upload_bytes)
        data = (await _files(request, body, ["photo"]))["photo"]

        def work():
            start = time.perf_counter()
            photo = _decode(data, "the photo", self.config.max_pixels)
            try:
                out = self.models.stylizer(name).stylize(
                    photo, max_size=max_size, preserve_color=preserve, strength=strength
                )
            except ValueError as e:
                raise ApiError(400, str(e)) from None
            png = encode_png(out)
            return png, out.shape, time.perf_counter() - start

        cancelled = threading.Event()
        future = self._submit(self.fast, work, cancelled)
        png, shape, seconds = await _await_unless_gone(request, future, cancelled)
        headers = {
            "X-Elapsed-Ms": f"{seconds * 1000:.0f}",
            "X-Image-Size": f"{shape[1]}x{shape[0]}",
        }
        return Response(png, media_type="image/png", headers=headers)

    @staticmethod
    def _submit(queue, *args):
        try:
            return queue.submit(*args)
        except jobs.QueueFull as e:
            raise ApiError(503, str(e), {"Retry-After": str(e.retry_after)}) from None

    async def slow_submit(self, request):
        from keras_style.slow import optimize

        params = request.query_params
        cfg = self.config
        size = _number(params, "size", int, min(384, cfg.slow_max_size), 64, cfg.slow_max_size)
        iterations = _number(params, "iterations", int, 100, 1, cfg.slow_max_iterations)
        preserve = _flag(params, "preserve_color")
        body = await _read_body(request, cfg.max_upload_bytes)
        files = await _files(request, body, ["photo", "painting"])
        photo = await run_in_threadpool(_decode, files["photo"], "the photo", cfg.max_pixels)
        painting = await run_in_threadpool(
            _decode, files["painting"], "the painting", cfg.max_pixels
        )
        levels = optimize.pyramid_sizes(size)
        total = sum(optimize.level_iterations(iterations, len(levels)))

        def work(job):
            from keras_style import api

            return api.stylize(
                photo,
                painting,
                size=size,
                iterations=iterations,
                preserve_color=preserve,
                backbone=cfg.backbone,
                vgg_weights=cfg.vgg_weights,
                callback=lambda step, image, parts: job.progress(step, image),
                callback_every=max(1, min(5, total // 10)),
                verbose=0,
            )

        job = self._submit(self.slow, work, total)
        return JSONResponse(job.status(position=None), status_code=202)

    def _job(self, request):
        try:
            return self.slow.get(request.path_params["job_id"])
        except KeyError:
            raise ApiError(404, "no such job (finished jobs are kept for a while only)") from None

    async def job_status(self, request):
        job, position = self._job(request)
        return JSONResponse(job.status(position))

    async def job_preview(self, request):
        job, _ = self._job(request)
        image = job.result if job.result is not None else job.preview
        if image is None:
            raise ApiError(404, "no preview yet")
        return await run_in_threadpool(_png, image)

    async def job_result(self, request):
        job, _ = self._job(request)
        if job.result is None:
            raise ApiError(409, f"the job is {job.state}, it has no result")
        return await run_in_threadpool(_png, job.result)

    async def job_cancel(self, request):
        try:
            job = self.slow.cancel(request.path_params["job_id"])
        except KeyError:
            raise ApiError(404, "no such job") from None
        return JSONResponse(job.status())

    def close(self):
        self.fast.close()
        self.slow.close()


class _ClientGone(Exception):
    pass


async def _await_unless_gone(request, future, cancelled):
    """Awaits a queued job; when the client disconnects first, the job is dropped."""
    wrapped = asyncio.wrap_future(future)
    while True:
        done, _ = await asyncio.wait({wrapped}, timeout=0.2)
        if done:
            try:
                return wrapped.result()
            except jobs.Cancelled:
                raise _ClientGone() from None
        if await request.is_disconnected():
            cancelled.set()
            raise _ClientGone()


async def _api_error(request, exc):
    return _error_response(exc.status, exc.message, exc.headers)


async def _http_error(request, exc):
    message = {404: "not found", 405: "method not allowed"}.get(exc.status_code, exc.detail)
    return _error_response(exc.status_code, str(message))


async def _client_gone(request, exc):
    return Response(status_code=499)  # nobody reads it: the client has gone


async def _unexpected(request, exc):
    # The message says what failed without a traceback; the log has the details.
    return _error_response(500, f"internal error ({type(exc).__name__})")


def create_app(config=None):
    """Builds the Starlette app (call `app.state.server.close()` or let the process end).

    Args:
        config: a `ServeConfig` (default: the defaults).
    """
    server = _Server(config or ServeConfig())
    routes = [
        Route("/", server.index),
        Route("/api/styles", server.styles),
        Route("/api/limits", server.limits),
        Route("/api/stylize", server.stylize, methods=["POST"]),
        Route("/api/slow", server.slow_submit, methods=["POST"]),
        Route("/api/jobs/{job_id:str}", server.job_status),
        Route("/api/jobs/{job_id:str}", server.job_cancel, methods=["DELETE"]),
        Route("/api/jobs/{job_id:str}/preview", server.job_preview),
        Route("/api/jobs/{job_id:str}/result", server.job_result),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    handlers = {
        ApiError: _api_error,
        HTTPException: _http_error,
        _ClientGone: _client_gone,
        Exception: _unexpected,
    }

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        server.close()

    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.server = server
    return app


def serve(config, host="127.0.0.1", port=8000, log=print):
    """Runs the app with uvicorn until interrupted; prints the URL first."""
    import uvicorn

    app = create_app(config)
    shown = f"[{host}]" if ":" in host else host
    log(f"keras-style serve: open http://{shown}:{port}/ (Ctrl+C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
