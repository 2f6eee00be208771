"""Keep large CPU activations on the heap instead of in fresh memory maps (glibc only).

glibc's malloc serves every allocation above M_MMAP_THRESHOLD (128 KiB, adapting up to 32 MiB) with a new
anonymous memory map and unmaps it again on free. PyTorch's CPU allocator is built on malloc, so each
activation of this model (16 MiB at 256x256 and 256 MiB at 1024x1024 with 64 channels) is faulted in 4 KiB
page by 4 KiB page, and zeroed by the kernel, on every forward pass. Measured on a 2-core CPU
(benchmarks/RESULTS.md): about 560,000 minor page faults per 256 -> 1024 pass and 0.92 s per image with
glibc's defaults; with the thresholds raised, hardly any after the first pass, and 0.35 s. The outputs do
not change: the allocator decides where memory lives, not what is computed.

Raising M_MMAP_THRESHOLD and switching off trimming keeps freed activations in the process for the next
layer, tile or image to reuse. The price is that the process keeps its peak memory until it exits, as a
caching allocator does. It is process-wide, so it is applied once and can be declined: pass
``tune_allocator=False`` to ``Upscaler`` or set ``CXRSR_CPU_ALLOCATOR=system``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1  # mallopt takes an int; larger allocations (> 2 GiB) are still memory-mapped
_DOCUMENTED_MAX = 32 * 2**20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems

_state: dict[str, bool] = {}


def tune_cpu_allocator() -> bool:
    """Raise glibc's mmap threshold and switch off trimming, once per process; True if done (now or before).

    Does nothing (and returns False) on other C libraries, on other systems, or when the environment sets
    ``CXRSR_CPU_ALLOCATOR=system``.
    """
    if "tuned" in _state:
        return _state["tuned"]
    _state["tuned"] = tuned = _apply()
    log.debug("CPU allocator thresholds %s", "raised" if tuned else "left at the system's defaults")
    return tuned


def allocator_tuned() -> bool:
    """Whether ``tune_cpu_allocator`` has raised the thresholds in this process."""
    return _state.get("tuned", False)


def _apply() -> bool:
    if os.environ.get("CXRSR_CPU_ALLOCATOR", "").strip().lower() == "system":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success. mallopt(3) documents 32 MiB as the highest mmap threshold, but glibc 2.36
    # accepts 2 GiB; where it is refused, 32 MiB still covers the 256x256 activations (0.78 -> 0.62 s per
    # image measured here, against 0.35 s at 2 GiB). Trimming is switched off (-1, mallopt(3)) only with a
    # raised mmap threshold: alone it was measured to make things slower, not faster.
    if not (mallopt(_M_MMAP_THRESHOLD, _INT_MAX) or mallopt(_M_MMAP_THRESHOLD, _DOCUMENTED_MAX)):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, -1))
