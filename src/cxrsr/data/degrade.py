"""The low-resolution degradation of the benchmark protocol, shared by training and evaluation so that both
degrade images the same way: Pillow's BICUBIC resize of the float image (mode "F"), clipped to [0, 1]."""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_float(image: np.ndarray, width: int, height: int, resample: int = Image.BICUBIC,
                 dtype: type = np.float64) -> np.ndarray:
    """Resize a 2-D float image with Pillow in 32-bit float mode; returns ``dtype`` (float64 by default)."""
    out = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F").resize((width, height), resample)
    return np.asarray(out, dtype=dtype)


def make_lr(hr: np.ndarray, scale: int = 4) -> np.ndarray:
    """Protocol LR: Pillow BICUBIC downscale of HR (2-D float in [0, 1]) by ``scale``, clipped to [0, 1]."""
    h, w = hr.shape
    if h % scale or w % scale:
        raise ValueError(f"HR size {w}x{h} is not a multiple of {scale}")
    return np.clip(resize_float(hr, w // scale, h // scale), 0.0, 1.0)


def bicubic_upscale(lr: np.ndarray, scale: int = 4) -> np.ndarray:
    """The bicubic baseline: Pillow BICUBIC upscale of LR by ``scale``, clipped to [0, 1]."""
    h, w = lr.shape
    return np.clip(resize_float(lr, w * scale, h * scale), 0.0, 1.0)
