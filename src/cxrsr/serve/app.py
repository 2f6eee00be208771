"""The FastAPI application: the JSON API under /api and the viewer page at /.

Every upload lives in a private temporary folder for the length of its request, under a fixed name (the
client's file name never reaches the filesystem), and the folder is removed before the response is sent.
Logs carry sizes, types and timings, never file names or DICOM tag values.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..inference import Upscaler
from ..io import InputFileError, LoadedImage, read_image
from ..io.dicom import parse_window
from ..weights import DEFAULT_WEIGHTS, WeightsError, available_weights, load_state_dict, resolve_weights
from .config import ServeConfig
from .jobs import (InferenceQueue, RequestError, check_pixels, compare_arrays, download_name, store_upload,
                   upscale_to_bytes)

log = logging.getLogger("cxrsr.serve")
MEDIA = {"png": "image/png", "tiff": "image/tiff", "dcm": "application/dicom"}
EXT = {"png": ".png", "tiff": ".tif", "dcm": ".dcm"}
MODEL_FIELDS = ("name", "description", "data", "license", "intended_use", "val_psnr", "total_steps",
                "total_samples", "total_cpu_hours", "scale", "cxrsr_version")


class BodyLimit:
    """ASGI middleware: a request body above ``limit`` bytes is answered 413 as soon as it is known to be too
    large (from Content-Length, or while it streams in), before it is parsed or stored."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _too_large(send, self.limit)
        seen = 0
        started = False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        async def tracked(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await _too_large(send, self.limit)


class _TooLarge(Exception):
    pass


async def _too_large(send, limit: int) -> None:
    body = f'{{"error": "upload larger than the server\'s limit of {limit / 2**20:g} MiB"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(config: ServeConfig) -> FastAPI:
    default_model = str(config.model or DEFAULT_WEIGHTS)
    resolve_weights(default_model)  # fail at start-up, not on the first request
    queue = InferenceQueue(config.queue_size)
    upscalers: dict[str, Upscaler] = {}

    @asynccontextmanager
    async def lifespan(app):
        yield
        queue.shutdown()

    app = FastAPI(title="cxrsr", version=__version__, lifespan=lifespan,
                  description="4x super-resolution of chest X-rays. Results are derived images, not for diagnosis.")
    app.add_middleware(GZipMiddleware, minimum_size=4096)
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes)
    app.state.queue = queue

    def model_names() -> list[str]:
        names = available_weights()
        return names if default_model in names else [default_model, *names]

    def upscaler(name: str | None) -> Upscaler:
        name = name or default_model
        if name not in model_names():  # only listed models: a request never names a file
            raise RequestError(422, f"unknown model {name!r}; available: {', '.join(model_names())}")
        if name not in upscalers:  # loaded in the inference thread's turn, once
            upscalers[name] = Upscaler.from_pretrained(name, device=config.device)
        return upscalers[name]

    def window_option(window: str | None) -> str | None:
        if window in (None, "", "full"):
            return None
        try:
            parse_window(window)
        except ValueError as exc:
            raise RequestError(422, str(exc)) from None
        return window

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError):
        log.info("%s %s -> %d", request.method, request.url.path, exc.status)
        return JSONResponse({"error": exc.reason}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(WeightsError)
    async def bad_weights(request: Request, exc: WeightsError):
        return JSONResponse({"error": str(exc)}, status_code=500)

    @app.get("/api/health")
    async def health():
        return {"status": "ok", "version": __version__, "device": config.device, "queued": queue.pending,
                "queue_size": queue.size}

    @app.get("/api/models")
    async def models():
        out = []
        for name in model_names():
            _, meta = load_state_dict(resolve_weights(name))
            entry = {k: meta[k] for k in MODEL_FIELDS if k in meta}
            entry["name"], entry["default"] = name, name == default_model
            out.append(entry)
        return {"models": out, "default": default_model}

    async def receive(file: UploadFile, folder: Path, window: str | None) -> LoadedImage:
        """Store the upload, check its size from the header, then decode it once, outside the model's queue, so
        that a truncated or corrupt file is answered 422 at once and never waits for (or fills) the queue. The
        decoded image is what the queued job upscales."""
        data = await file.read()
        path = store_upload(data, folder)
        check_pixels(path, config.max_pixels)
        try:
            return await run_in_threadpool(read_image, path, window)
        except InputFileError as exc:
            raise RequestError(422, exc.reason) from None

    @app.post("/api/upscale", responses={200: {"content": {m: {} for m in MEDIA.values()}}})
    async def upscale(file: UploadFile = File(...), model: str | None = Form(None), format: str = Form("png"),
                      window: str | None = Form(None)):
        """Upscale one PNG, JPEG, TIFF or DICOM upload; answers the file (png, tiff or dcm)."""
        if format not in MEDIA:
            raise RequestError(422, f"format must be one of {', '.join(MEDIA)}, got {format!r}")
        start, rid = time.perf_counter(), uuid.uuid4().hex[:8]
        with tempfile.TemporaryDirectory(prefix="cxrsr-serve-") as tmp:
            win = window_option(window)
            image = await receive(file, Path(tmp), win)
            if format == "dcm" and image.dicom is None:
                raise RequestError(422, "DICOM output needs a DICOM input; ask for png or tiff")
            body = await queue.run(lambda: upscale_to_bytes(upscaler(model), image, Path(tmp), format))
        log.info("upscale %s: %s in, %d bytes %s out, %.2f s", rid, image.format, len(body), format,
                 time.perf_counter() - start)
        name = download_name(file.filename, EXT[format])
        return Response(body, media_type=MEDIA[format], headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Derived-Image": "super-resolved by cxrsr; detail inferred by a neural network; not for diagnosis"})

    @app.post("/api/compare")
    async def compare(file: UploadFile = File(...), model: str | None = Form(None), window: str | None = Form(None)):
        """Input, bicubic x4 and cxrsr x4 as grey 16-bit pixels (base64, little-endian) for the viewer."""
        start, rid = time.perf_counter(), uuid.uuid4().hex[:8]
        with tempfile.TemporaryDirectory(prefix="cxrsr-serve-") as tmp:
            win = window_option(window)
            image = await receive(file, Path(tmp), win)
            result = await queue.run(lambda: compare_arrays(upscaler(model), image, config.max_view_pixels))
        log.info("compare %s: %s in, %.2f s", rid, image.format, time.perf_counter() - start)
        return result

    static = resources.files(__package__) / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(str(static / "index.html"))

    return app

