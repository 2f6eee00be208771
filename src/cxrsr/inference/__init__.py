"""Inference: the Upscaler, tiling, device and precision selection."""

from .device import resolve_device, resolve_precision
from .tiling import auto_tile_size, tile_starts, upscale_tiled
from .upscaler import DEFAULT_OVERLAP, Upscaler

__all__ = [
    "DEFAULT_OVERLAP",
    "Upscaler",
    "auto_tile_size",
    "resolve_device",
    "resolve_precision",
    "tile_starts",
    "upscale_tiled",
]
