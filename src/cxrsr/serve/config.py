"""Limits and defaults of the HTTP service."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeConfig:
    model: str | None = None  # default model name or weights file (None: the package default, cxr-fidelity)
    device: str = "auto"
    max_upload_mb: float = 64.0  # request bodies above this are refused with 413 while they stream in
    max_pixels: int = 2048 * 2048  # input pixels (width x height x frames), checked from the header before decoding
    max_view_pixels: int = 1024 * 1024  # /api/compare sends raw 16-bit pixels to the browser: inputs up to this
    queue_size: int = 4  # requests waiting for or in the model; one more is answered 503 with Retry-After

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)
