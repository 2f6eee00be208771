"""The benchmark protocol: how every quality number is computed.

1. Load as grey float64 in [0, 1] (8-bit / 255, 16-bit / 65535, RGB(A) -> luminance; DICOM: modality LUT,
   min-max over the image, MONOCHROME1 inverted).
2. HR: centre square crop; if its side is >= 1024, Lanczos to 1024 x 1024, else crop to a multiple of 4.
3. LR: Pillow BICUBIC of HR (float mode) to 1/4 per side, clipped to [0, 1].
4. SR from LR (grey replicated to RGB, output averaged to grey), clipped to [0, 1], no 8-bit rounding.
5. PSNR (data_range 1) and SSIM (Gaussian sigma 1.5, population covariance, data_range 1) after cropping a
   4-pixel border; means over images. Bicubic is always reported on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.degrade import make_lr, resize_float
from ..io import InputFileError, read_image

HR_SIDE = 1024
BORDER = 4


def load_grey(path: str | Path) -> np.ndarray:
    """Step 1: the image as 2-D float64 in [0, 1]."""
    image = read_image(path)
    a = image.array
    if image.format == "dicom":  # read_image already applied the modality LUT, min-max and MONOCHROME1
        return a.astype(np.float64)
    if a.ndim == 3:
        if a.shape[2] in (2, 4):
            a = a[:, :, :-1]
        if a.shape[2] == 3:
            if a.dtype == np.uint8:
                a = np.asarray(Image.fromarray(a, "RGB").convert("L"))
            else:  # 16-bit or float colour: ITU-R 601-2 luma, as Pillow's "L"
                a = a[:, :, 0] * 0.299 + a[:, :, 1] * 0.587 + a[:, :, 2] * 0.114
        else:
            a = a[:, :, 0]
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float64) / 65535.0
    return np.clip(a.astype(np.float64), 0.0, 1.0)


def make_hr(grey: np.ndarray, side: int = HR_SIDE, scale: int = 4) -> np.ndarray:
    """Step 2: centre square crop, then Lanczos to ``side`` if at least that large, else a multiple of 4."""
    h, w = grey.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = grey[top : top + s, left : left + s]
    if s >= side:
        return np.clip(resize_float(square, side, side, Image.LANCZOS), 0.0, 1.0) if s != side else square
    s4 = s - s % scale
    return square[:s4, :s4]


@dataclass(frozen=True)
class Pair:
    """One evaluation image: its name, HR and LR."""

    name: str
    hr: np.ndarray
    lr: np.ndarray


#: The smallest HR side the protocol scores: a 7x7 SSIM window must fit inside the border crop.
MIN_HR_SIDE = 2 * BORDER + 8


def load_pair(path: str | Path, scale: int = 4) -> Pair:
    grey = load_grey(path)
    if min(grey.shape) < MIN_HR_SIDE:
        h, w = grey.shape
        raise InputFileError(path, f"image is {w}x{h} pixels; the evaluation protocol needs at least "
                                   f"{MIN_HR_SIDE}x{MIN_HR_SIDE} (a {BORDER}-pixel border is cropped before scoring)")
    hr = make_hr(grey, scale=scale)
    return Pair(Path(path).name, hr, make_lr(hr, scale))


def psnr(sr: np.ndarray, hr: np.ndarray, border: int = BORDER) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(_crop(hr, border), _crop(np.clip(sr, 0, 1), border), data_range=1.0))


def ssim(sr: np.ndarray, hr: np.ndarray, border: int = BORDER) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_crop(hr, border), _crop(np.clip(sr, 0, 1), border), data_range=1.0,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False))


def _crop(a: np.ndarray, border: int) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[border:-border, border:-border] if border else a
