"""What one request does, away from HTTP: take an upload safely, check it before decoding, and run the model
through a bounded queue (one inference at a time per device)."""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.degrade import resize_float
from ..inference.files import derivation_description, write_upscaled
from ..io import InputFileError
from ..io.image import LoadedImage
from ..io.probe import sniff


class RequestError(Exception):
    """A request the service refuses: an HTTP status and a one-line reason (no file paths, no tag values)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


# ------------------------------------------------------------------------------------------------- uploads


_UPLOAD_SUFFIX = {"dicom": ".dcm", "png": ".png", "jpeg": ".jpg", "tiff": ".tif"}


def store_upload(data: bytes, folder: Path) -> Path:
    """Write the upload under a fixed name in the request's private folder; the suffix comes from its content."""
    if not data:
        raise RequestError(422, "empty upload (0 bytes)")
    suffix = _UPLOAD_SUFFIX.get(sniff(data[:132]))
    if suffix is None:
        raise RequestError(415, "not a PNG, JPEG, TIFF or DICOM file (checked by content, not by name)")
    path = folder / f"upload{suffix}"
    path.write_bytes(data)
    return path


def check_pixels(path: Path, limit: int) -> tuple[int, int, int]:
    """Width, height and frames from the file's header, before any pixel is decoded; refuse above ``limit``."""
    try:
        if path.suffix == ".dcm":
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if "Rows" not in ds or "Columns" not in ds:
                raise RequestError(422, "DICOM file has no image (Rows / Columns missing)")
            w, h = int(ds.Columns), int(ds.Rows)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
        else:
            with Image.open(path) as im:
                w, h = im.size
                frames = getattr(im, "n_frames", 1)
    except RequestError:
        raise
    except Image.DecompressionBombError as exc:
        raise RequestError(422, f"image refused before decoding: its size exceeds the server's limit of {limit} "
                                f"pixels ({exc})") from None
    except Exception as exc:  # a header that cannot be parsed: truncated or corrupt
        raise RequestError(422, f"cannot read the image header ({type(exc).__name__})") from None
    if w * h * frames > limit:
        raise RequestError(422, f"image of {w}x{h} pixels{f' x {frames} frames' if frames > 1 else ''} exceeds "
                                f"the server's limit of {limit} pixels")
    return w, h, frames


def download_name(client_name: str | None, ext: str) -> str:
    """A safe name for Content-Disposition (the client's name is never used as a path)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(client_name or "image").stem)[:80].strip("._") or "image"
    return f"{stem}_x4{ext}"


# --------------------------------------------------------------------------------------------------- queue


class InferenceQueue:
    """At most ``size`` requests waiting for or running in the model; they run one at a time in one worker
    thread, so one device never holds two inferences' memory at once. A request beyond ``size`` is refused at
    once (503) with a Retry-After from the mean time per request."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cxrsr-inference")
        self._lock = threading.Lock()
        self.pending = 0
        self.mean_seconds = 2.0
        self.peak_pending = 0

    async def run(self, fn, *args):
        with self._lock:
            if self.pending >= self.size:
                wait = max(1, math.ceil(self.mean_seconds * self.pending))
                raise RequestError(503, f"busy: {self.pending} requests are queued for the model; retry later",
                                   {"Retry-After": str(wait)})
            self.pending += 1
            self.peak_pending = max(self.peak_pending, self.pending)
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._timed, fn, args)
        finally:
            with self._lock:
                self.pending -= 1

    def _timed(self, fn, args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * (time.perf_counter() - start)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------------------------------------------- work


def upscale_to_bytes(upscaler, image: LoadedImage, folder: Path, fmt: str) -> bytes:
    """The CLI's per-file step (bit depth kept, derived DICOM, derived-image note), into memory."""
    dst = folder / f"result.{'tif' if fmt == 'tiff' else fmt}"
    try:
        write_upscaled(upscaler, image, dst, fmt=fmt)
    except InputFileError as exc:
        raise RequestError(422, exc.reason) from None
    return dst.read_bytes()


def compare_arrays(upscaler, image: LoadedImage, max_view_pixels: int) -> dict:
    """Input, bicubic x4 and cxrsr x4 as grey uint16 in one scale (display polarity), for the viewer."""
    h, w = image.array.shape[:2]
    if w * h > max_view_pixels:
        raise RequestError(422, f"the viewer shows images up to {max_view_pixels} input pixels; this one is "
                                f"{w}x{h} (use /api/upscale or the command line for it)")
    sr = upscaler.upscale_array(image.array, tile="auto")
    lo, hi = _value_range(image)
    grey_in, grey_sr = _grey(image.array), _grey(sr)
    bicubic = np.clip(resize_float(grey_in, w * upscaler.scale, h * upscaler.scale), lo, hi)
    return {
        "model": upscaler.weights_name, "scale": upscaler.scale,
        "bits": 8 if image.array.dtype == np.uint8 else 16, "dicom": image.format == "dicom",
        "derived": derivation_description(upscaler),
        "input": _u16(grey_in, lo, hi), "bicubic": _u16(bicubic, lo, hi), "sr": _u16(grey_sr, lo, hi),
    }


def _value_range(image: LoadedImage) -> tuple[float, float]:
    a = image.array
    if image.format == "dicom":
        return 0.0, 1.0
    if a.dtype == np.uint8:
        return 0.0, 255.0
    if a.dtype == np.uint16:
        return 0.0, 65535.0
    return float(a.min()), float(a.max()) if float(a.max()) > float(a.min()) else float(a.min()) + 1.0


def _grey(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    if a.ndim == 3:
        a = a[:, :, : 3 if a.shape[2] >= 3 else 1].mean(axis=2)
    return a


def _u16(a: np.ndarray, lo: float, hi: float) -> dict:
    import base64

    u = np.rint(np.clip((a - lo) / (hi - lo), 0, 1) * 65535).astype("<u2")
    return {"width": int(u.shape[1]), "height": int(u.shape[0]), "data": base64.b64encode(u.tobytes()).decode()}
