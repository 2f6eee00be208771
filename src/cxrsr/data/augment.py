"""The seed paper's augmentations, applied to the HR patch before the LR is made from it, so every LR/HR
pair stays aligned: random crop, rotation (35-90 degrees, either sign), CLAHE, horizontal flip (p 0.5),
vertical flip (p 0.2). Grey is replicated to three channels later, when batches are built.

Beyond the paper, for images from other hospitals (all off by default):
- scale: the patch is cut from the image downscaled (Lanczos) by a random factor in [scale_min, 1], so the
  network also sees anatomy at a finer pixel pitch, as in radiographs stored at a higher resolution than NIH's;
- intensity: gamma, contrast and brightness changes and inversion (MONOCHROME1-like polarity), each with its
  own probability, for other detectors' and processing chains' grey-level curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass
class AugmentConfig:
    rotate_p: float = 0.5
    rotate_min: float = 35.0  # degrees, as the paper's "minimum limit"
    rotate_max: float = 90.0  # degrees, as the paper's "maximum limit"
    clahe_p: float = 0.5
    clahe_clip: float = 0.01  # scikit-image's normalised clip limit
    clahe_tiles: int = 8  # tiles per side, as albumentations' 8 x 8 grid
    hflip_p: float = 0.5
    vflip_p: float = 0.2
    scale_p: float = 0.0  # downscale the image by a factor in [scale_min, 1] before cropping
    scale_min: float = 0.5
    gamma_p: float = 0.0  # patch ** gamma, gamma log-uniform in [1 / gamma_max, gamma_max]
    gamma_max: float = 1.5
    contrast_p: float = 0.0  # (patch - mean) * c + mean, c uniform in [1 - contrast, 1 + contrast]
    contrast: float = 0.25
    brightness_p: float = 0.0  # patch + b, b uniform in [-brightness, brightness]
    brightness: float = 0.1
    invert_p: float = 0.0  # 1 - patch


def random_patch(image: np.ndarray, size: int, rng: np.random.Generator, aug: AugmentConfig | None) -> np.ndarray:
    """A ``size`` x ``size`` HR patch (float32 in [0, 1]) with the configured augmentations."""
    h, w = image.shape
    if h < size or w < size:
        raise ValueError(f"image {w}x{h} is smaller than the {size}x{size} patch")
    aug = aug or AugmentConfig(rotate_p=0, clahe_p=0, hflip_p=0, vflip_p=0)
    if aug.scale_p > 0 and rng.random() < aug.scale_p:
        image = _downscaled_region(image, size, rng.uniform(aug.scale_min, 1.0), rng)
        h, w = image.shape
    patch = None
    if aug.rotate_p > 0 and rng.random() < aug.rotate_p:
        angle = rng.uniform(aug.rotate_min, aug.rotate_max) * (1 if rng.random() < 0.5 else -1)
        rad = math.radians(angle)
        need = int(math.ceil(size * (abs(math.cos(rad)) + abs(math.sin(rad))))) + 2
        if need <= min(h, w):  # rotate a larger region, then keep its centre: no empty corners
            region = _crop(image, need, rng)
            rotated = np.asarray(Image.fromarray(region, "F").rotate(angle, resample=Image.BICUBIC))
            off = (need - size) // 2
            patch = rotated[off : off + size, off : off + size]
    if patch is None:
        patch = _crop(image, size, rng)
    patch = np.clip(patch, 0.0, 1.0)
    if aug.clahe_p > 0 and rng.random() < aug.clahe_p:
        from skimage.exposure import equalize_adapthist

        patch = equalize_adapthist(patch, kernel_size=max(8, size // aug.clahe_tiles), clip_limit=aug.clahe_clip)
    patch = _intensity(patch, aug, rng)
    if aug.hflip_p > 0 and rng.random() < aug.hflip_p:
        patch = patch[:, ::-1]
    if aug.vflip_p > 0 and rng.random() < aug.vflip_p:
        patch = patch[::-1, :]
    return np.ascontiguousarray(patch, dtype=np.float32)


def _crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return np.ascontiguousarray(image[top : top + size, left : left + size], dtype=np.float32)


def _downscaled_region(image: np.ndarray, size: int, factor: float, rng: np.random.Generator) -> np.ndarray:
    """A random region of ``image``, downscaled by ``factor`` (Lanczos), large enough for a rotated patch."""
    h, w = image.shape
    want = int(math.ceil((size * math.sqrt(2) + 4) / factor))  # room for any rotation of the patch
    side = min(want, h, w)
    out = max(size, int(round(side * factor)))
    if out >= side:
        return image
    region = _crop(image, side, rng)
    return np.asarray(Image.fromarray(region, "F").resize((out, out), Image.LANCZOS))


def _intensity(patch: np.ndarray, aug: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Gamma, contrast, brightness and inversion, each with its probability; the result stays in [0, 1]."""
    changed = False
    if aug.gamma_p > 0 and rng.random() < aug.gamma_p:
        patch = np.power(np.clip(patch, 0.0, 1.0), math.exp(rng.uniform(-1, 1) * math.log(aug.gamma_max)))
        changed = True
    if aug.contrast_p > 0 and rng.random() < aug.contrast_p:
        mean = float(patch.mean())
        patch = (patch - mean) * rng.uniform(1 - aug.contrast, 1 + aug.contrast) + mean
        changed = True
    if aug.brightness_p > 0 and rng.random() < aug.brightness_p:
        patch = patch + rng.uniform(-aug.brightness, aug.brightness)
        changed = True
    if aug.invert_p > 0 and rng.random() < aug.invert_p:
        patch = 1.0 - patch
        changed = True
    return np.clip(patch, 0.0, 1.0) if changed else patch
