"""Scoring super-resolution on folders of images with the benchmark protocol (see protocol.py)."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.degrade import bicubic_upscale, resize_float
from ..io import INPUT_SUFFIXES, InputFileError
from ..io.atomic import atomic_path
from .protocol import Pair, load_pair, psnr, ssim

log = logging.getLogger(__name__)

SRFunction = Callable[[np.ndarray], np.ndarray]  # LR (H, W) float in [0, 1] -> SR (4H, 4W) float


@dataclass(frozen=True)
class Score:
    set: str
    model: str
    image: str
    psnr: float
    ssim: float


def bicubic(lr: np.ndarray) -> np.ndarray:
    return bicubic_upscale(lr, 4)


def lanczos(lr: np.ndarray) -> np.ndarray:
    h, w = lr.shape
    return np.clip(resize_float(lr, w * 4, h * 4, Image.LANCZOS), 0.0, 1.0)


BASELINES: dict[str, SRFunction] = {"bicubic": bicubic, "lanczos": lanczos}


def upscaler_sr(upscaler) -> SRFunction:
    """An Upscaler as an SR function on protocol LR images (float32 in, float out, whole image at once)."""
    return lambda lr: upscaler.upscale_array(lr.astype(np.float32), tile=None).astype(np.float64)


def upscaler_sr_by_steps(upscaler, steps: Iterable[int]) -> dict[int, SRFunction]:
    """SR functions of one network followed by each number of back-projection steps in ``steps``.

    The network (``upscaler`` with its consistency set to 0) runs once per LR image, and every number of steps
    starts from that output: scoring N variants costs one network pass per image, not N. The outputs are kept,
    with their LR images, for the life of the returned functions (about 4 MB per 256x256 input)."""
    from ..inference.consistency import back_project

    if upscaler.consistency:
        raise ValueError("upscaler_sr_by_steps needs an Upscaler with consistency=0 (the network alone)")
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def network(lr: np.ndarray) -> np.ndarray:
        if id(lr) not in cache:  # the entry keeps lr alive, so no other array can take its id
            cache[id(lr)] = (lr, upscaler.upscale_array(lr.astype(np.float32), tile=None))
        return cache[id(lr)][1]

    def with_steps(n: int) -> SRFunction:
        def sr(lr: np.ndarray) -> np.ndarray:
            out = network(lr).astype(np.float32, copy=True)[None]
            return back_project(out, lr.astype(np.float32)[None], upscaler.scale, n)[0].astype(np.float64)
        return sr

    return {n: with_steps(n) for n in steps}


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(folder, "not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES)
    if not files:
        raise InputFileError(folder, "folder holds no PNG, JPEG, TIFF or DICOM images")
    return files


def score_pairs(pairs: Iterable[Pair], sr: SRFunction, set_name: str = "", model: str = "") -> list[Score]:
    """PSNR and SSIM of ``sr`` on each pair (the training loop's validation calls this too)."""
    scores = []
    for pair in pairs:
        out = np.clip(sr(pair.lr), 0.0, 1.0)
        scores.append(Score(set_name, model, pair.name, psnr(out, pair.hr), ssim(out, pair.hr)))
    return scores


def summarise(scores: list[Score]) -> dict[str, dict[str, dict[str, float]]]:
    """``{set: {model: {"psnr", "ssim", "n"}}}`` with means over images."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for s in scores:
        out.setdefault(s.set, {}).setdefault(s.model, {"psnr": 0.0, "ssim": 0.0, "n": 0})
    for s in scores:
        m = out[s.set][s.model]
        m["psnr"] += s.psnr
        m["ssim"] += s.ssim
        m["n"] += 1
    for models in out.values():
        for m in models.values():
            m["psnr"] /= m["n"]
            m["ssim"] /= m["n"]
    return out


def evaluate(folders: list[str | Path], models: dict[str, SRFunction], progress=None,
             on_error: Callable[[InputFileError], None] | None = None) -> list[Score]:
    """Score every model on every folder; each image is loaded once and shared by all models.

    A folder or image that cannot be read raises :class:`InputFileError`, unless ``on_error`` is given: then
    it is passed the error, the folder or image is skipped and the others are still scored."""
    on_error = on_error or _raise
    scores: list[Score] = []
    for folder in folders:
        try:
            files = list_images(folder)
        except InputFileError as exc:
            on_error(exc)
            continue
        pairs = []
        for path in files:
            try:
                pairs.append(load_pair(path))
            except InputFileError as exc:
                on_error(exc)
        if not pairs:
            continue
        for name, sr in models.items():
            scores += score_pairs(pairs, sr, str(folder), name)
            if progress is not None:
                progress(str(folder), name)
    return scores


def _raise(exc: InputFileError) -> None:
    raise exc


def format_table(summary: dict, reference: str = "bicubic") -> str:
    lines = [f"{'set':40s} {'model':24s} {'n':>4s} {'PSNR dB':>9s} {'SSIM':>7s} {'dPSNR':>7s} {'dSSIM':>8s}"]
    for set_name, models in summary.items():
        ref = models.get(reference)
        for name, m in models.items():
            dp = f"{m['psnr'] - ref['psnr']:+7.2f}" if ref else ""
            ds = f"{m['ssim'] - ref['ssim']:+8.4f}" if ref else ""
            lines.append(f"{set_name[-40:]:40s} {name[:24]:24s} {m['n']:4d} {m['psnr']:9.2f} {m['ssim']:7.4f} {dp} {ds}")
    return "\n".join(lines)


def write_csv(scores: list[Score], path: str | Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["set", "model", "image", "psnr", "ssim"])
        writer.writeheader()
        for s in scores:
            writer.writerow(asdict(s))


def write_json(summary: dict, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"sets": summary}, indent=2) + "\n")
