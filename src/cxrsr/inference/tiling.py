"""Tiled inference for images too large to upscale in one pass.

The image is cut into overlapping tiles on a grid. Each tile is upscaled together with ``pad`` pixels of
context on every side that has image there; the context is cropped off the output, because the
convolutions' zero padding makes a tile's output unlike the whole-image output near its edge (on real chest
X-rays at 4x: 1e-2 at 4 input pixels from the edge, 2e-4 at 12, 7e-6 at 16, float32 rounding from 20 on;
benchmarks/tiling_agreement.py). The cropped tiles
overlap by ``overlap`` pixels and are blended with weights that ramp linearly across the overlap, so no
seam remains. The weights form a product of one ramp per axis, so the normalisation is a product of two
1-D sums and needs no full-size weight image.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

#: Tile size limits in input (low-resolution) pixels.
MIN_TILE, MAX_TILE = 64, 2048
#: On the CPU, time per pixel grows once a tile's activations outgrow the caches: measured on a 2-core
#: machine (benchmarks/cpu_tile_size.py, benchmarks/RESULTS.md), per 256x256 of input a 256-pixel forward
#: pass takes 0.35 s, a 304-pixel one (a 256 core plus 24 context each side) 0.37 s, a 400-pixel one 0.42 s,
#: a 560-pixel one 0.50 s. So CPU tiles stay at 256.
CPU_TILE = 256


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap`` shared pixels."""
    if length <= tile:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _ramp(start: int, size: int, length: int, overlap: int, scale: int) -> np.ndarray:
    """Blending weights along one axis for the output of a tile at ``start`` (input pixels)."""
    n = size * scale
    w = np.ones(n, dtype=np.float64)
    ramp_len = max(1, overlap * scale)
    pos = np.arange(n) + 0.5
    if start > 0:
        w = np.minimum(w, pos / ramp_len)
    if start + size < length:
        w = np.minimum(w, (n - pos) / ramp_len)
    return w


def upscale_tiled(
    forward: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    scale: int,
    out_channels: int,
    tile: int,
    overlap: int,
    pad: int,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Upscale ``image`` (C, H, W float32 on the CPU) tile by tile with ``forward`` (a (1, C, h, w) batch
    to a (1, out_channels, scale*h, scale*w) float32 CPU tensor). ``tile`` and ``overlap`` count input
    pixels of each tile's kept core; ``pad`` is the extra context. Returns (out_channels, sH, sW) float32."""
    _, h, w = image.shape
    tile_h, tile_w = min(tile, h), min(tile, w)
    overlap = min(overlap, tile // 2)
    ys, xs = tile_starts(h, tile_h, overlap), tile_starts(w, tile_w, overlap)
    out = np.zeros((out_channels, h * scale, w * scale), dtype=np.float32)
    norm_y = np.zeros(h * scale)
    norm_x = np.zeros(w * scale)
    ramps_y = [_ramp(y, tile_h, h, overlap, scale) for y in ys]
    ramps_x = [_ramp(x, tile_w, w, overlap, scale) for x in xs]
    for y, ry in zip(ys, ramps_y):
        norm_y[y * scale : (y + tile_h) * scale] += ry
    for x, rx in zip(xs, ramps_x):
        norm_x[x * scale : (x + tile_w) * scale] += rx
    total, done = len(ys) * len(xs), 0
    for y, ry in zip(ys, ramps_y):
        for x, rx in zip(xs, ramps_x):
            y0, x0 = max(0, y - pad), max(0, x - pad)
            y1, x1 = min(h, y + tile_h + pad), min(w, x + tile_w + pad)
            patch = image[:, y0:y1, x0:x1].unsqueeze(0)
            result = forward(patch)[0].numpy()
            cy, cx = (y - y0) * scale, (x - x0) * scale
            result = result[:, cy : cy + tile_h * scale, cx : cx + tile_w * scale]
            weight = (ry[:, None] * rx[None, :]).astype(np.float32)
            out[:, y * scale : (y + tile_h) * scale, x * scale : (x + tile_w) * scale] += result * weight
            done += 1
            if progress is not None:
                progress(done, total)
    out *= (1.0 / norm_y).astype(np.float32)[:, None]  # in place, one axis at a time: no full-size temporary
    out *= (1.0 / norm_x).astype(np.float32)[None, :]
    return out


def auto_tile_size(device: torch.device, channels: int, scale: int, dtype: torch.dtype, pad: int = 0) -> int:
    """The largest tile core (input pixels per side, a multiple of 32) whose working memory fits a budget:
    half the free memory of a CUDA device, or a quarter of the available RAM (at most 4 GiB) elsewhere;
    on the CPU at most :data:`CPU_TILE`, the fastest size measured there."""
    return auto_tile_choice(device, channels, scale, dtype, pad)[0]


def auto_tile_choice(device: torch.device, channels: int, scale: int, dtype: torch.dtype,
                     pad: int = 0) -> tuple[int, str]:
    """:func:`auto_tile_size` and a line saying why: the memory figure it read and the budget it allowed."""
    per_pixel = channels * scale * scale * 6 * torch.finfo(dtype).bits // 8
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget, source = free // 2, f"half of the device's {free / 2**30:.1f} GiB free"
    else:
        available = available_ram()
        budget = min(available // 4, 4 << 30)
        source = f"a quarter of {available / 2**30:.1f} GiB available RAM, at most 4 GiB"
    side = (int((budget / per_pixel) ** 0.5) - 2 * pad) // 32 * 32
    if device.type == "cpu":
        side = min(side, CPU_TILE)
    tile = max(MIN_TILE, min(MAX_TILE, side))
    return tile, f"automatic tile {tile} input pixels (+{pad} context): budget {budget / 2**30:.2f} GiB, {source}"


#: Where Linux states its memory figures; tests point these at fakes.
MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")


def available_ram() -> int:
    """Bytes of RAM this process can use without swapping: what the kernel calls available (free memory plus
    the page cache and other memory it can reclaim, /proc/meminfo's MemAvailable), capped by the container's
    cgroup v2 limit where one is set. Free memory alone (MemFree) would count the page cache as used: on a
    machine that has read a few gigabytes of files it is a fraction of what is available, and the automatic
    tile size would cut a 256x256 image into nine tiles. Elsewhere psutil's figure, where it is installed, then
    the free physical pages, then 4 GiB."""
    available = _meminfo_available()
    if available is None:
        try:
            import psutil

            available = int(psutil.virtual_memory().available)
        except ImportError:
            try:
                available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError, AttributeError):
                available = 4 << 30
    limit = _cgroup_headroom()
    return min(available, limit) if limit is not None else available


def _meminfo_available() -> int | None:
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom() -> int | None:
    """A cgroup v2 memory limit minus what the group uses beyond its reclaimable file cache, or None."""
    try:
        limit_text = (CGROUP / "memory.max").read_text().strip()
        if limit_text == "max":
            return None
        used = int((CGROUP / "memory.current").read_text())
        inactive_file = 0
        for line in (CGROUP / "memory.stat").read_text().splitlines():
            if line.startswith("inactive_file "):
                inactive_file = int(line.split()[1])
        return max(0, int(limit_text) - max(0, used - inactive_file))
    except (OSError, ValueError):
        return None
