"""Upscaling files: finding inputs, naming outputs, and the per-file read -> upscale -> write step.

Input files are never modified: outputs that would land on an input are refused, and every output is written
under a temporary name and renamed only when complete.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..io import INPUT_SUFFIXES, OUTPUT_FORMATS, InputFileError, LoadedImage, looks_like_dicom, read_image, write_image
from ..io.image import format_for_suffix
from ..io.dicom import derived_dataset, stored_from_values, values_from_unit, write_dicom
from .upscaler import Upscaler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputFile:
    path: Path
    relative_dir: Path  # sub-folder below a folder given on the command line, mirrored in the output


@dataclass
class Job:
    src: InputFile
    dst: Path | None  # None when the output cannot be named (see ``problem``)
    action: str  # "run", "skip" or "fail"
    problem: str = ""


def collect_inputs(items: list[str | Path], recursive: bool = False) -> tuple[list[InputFile], list[str]]:
    """Expand files, folders and glob patterns into input files (sorted, without duplicates).

    Folders contribute files with an image suffix (PNG, JPEG, TIFF, DICOM) and DICOM files without one.
    Returns the files and one message for each item that matched nothing.
    """
    found: list[InputFile] = []
    seen: set[Path] = set()
    problems: list[str] = []

    def add(path: Path, rel: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(InputFile(path, rel))

    for item in items:
        item = str(item)
        path = Path(item)
        if path.is_dir():
            walker = sorted(path.rglob("*") if recursive else path.iterdir())
            matched = [p for p in walker if p.is_file() and _is_candidate(p)]
            for p in matched:
                add(p, p.parent.relative_to(path))
            if not matched:
                problems.append(f"{path}: folder holds no PNG, JPEG, TIFF or DICOM files")
        elif path.exists():
            add(path, Path("."))
        elif glob.has_magic(item):
            matched = sorted(Path(p) for p in glob.glob(item, recursive=recursive) if Path(p).is_file())
            for p in matched:
                add(p, Path("."))
            if not matched:
                problems.append(f"{item}: pattern matches no files")
        else:
            problems.append(f"{path}: no such file or folder")
    return found, problems


def _is_candidate(path: Path) -> bool:
    if path.name.startswith("."):
        return False
    if path.suffix.lower() in INPUT_SUFFIXES:
        return True
    return path.suffix == "" and looks_like_dicom(path)


def default_format(path: Path) -> str:
    """Output format for an input when none is asked for: DICOM stays DICOM, TIFF stays TIFF, the rest PNG."""
    if path.suffix.lower() in (".tif", ".tiff"):
        return "tiff"
    return "dcm" if looks_like_dicom(path) else "png"


def plan_jobs(
    inputs: list[InputFile],
    outdir: Path,
    fmt: str | None = None,
    suffix: str = "_x4",
    overwrite: bool = False,
) -> list[Job]:
    """Name each output ``OUTDIR/<sub-folder>/<stem><suffix>.<ext>`` and decide whether to run, skip or refuse.

    When the output folder is an input folder, the outputs of an earlier run sit among the inputs: an input
    that is the output another input would get is skipped, never upscaled again (no ``_x4_x4``)."""
    named = []  # (input, its output, the output resolved, the input resolved): each path resolved once
    for item in inputs:
        dst = outdir / item.relative_dir / f"{item.path.stem}{suffix}{OUTPUT_FORMATS[fmt or default_format(item.path)]}"
        named.append((item, dst, dst.resolve(), item.path.resolve()))
    earlier_outputs = {key: item.path for item, _, key, src_key in named if key != src_key}
    input_keys = {src_key for *_, src_key in named} - set(earlier_outputs)
    claimed: dict[Path, Path] = {}
    jobs = []
    for item, dst, key, src_key in named:
        if src_key in earlier_outputs:
            jobs.append(Job(item, None, "skip", f"{item.path} is the output of {earlier_outputs[src_key]}; "
                                                "not upscaled again"))
        elif key in input_keys:
            jobs.append(Job(item, None, "fail", f"output {dst} would overwrite an input file; use --suffix or another -o"))
        elif key in claimed:
            jobs.append(Job(item, None, "fail", f"output {dst} is also the output of {claimed[key]}; use --suffix"))
        else:
            claimed[key] = item.path
            action = "skip" if dst.exists() and not overwrite else "run"
            jobs.append(Job(item, dst, action))
    return jobs


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def upscale_file(
    upscaler: Upscaler,
    src: str | Path,
    dst: str | Path,
    fmt: str | None = None,
    tile: int | str | None = None,
    window: str | None = None,
    strip_metadata: bool = False,
    progress=None,
) -> Path:
    """Read ``src``, upscale it and write ``dst`` atomically. Raises :class:`InputFileError` for bad input.

    ``fmt`` 'dcm' (the default for DICOM input) writes a derived DICOM instance; PNG / TIFF / JPEG outputs
    carry a note that they are derived (cxrsr version and weights) unless ``strip_metadata``."""
    src, dst = Path(src), Path(dst)
    image = read_input(src, dst, window)
    return write_upscaled(upscaler, image, dst, fmt=fmt, tile=tile, strip_metadata=strip_metadata, progress=progress)


def read_input(src: Path, dst: Path, window: str | None = None) -> LoadedImage:
    """Read ``src`` for upscaling to ``dst``, refusing a ``dst`` that is ``src`` itself."""
    if dst.exists() and _same_file(src, dst):
        raise InputFileError(src, "output path is the input file; refusing to overwrite an input")
    return read_image(src, window=window)


def write_upscaled(
    upscaler: Upscaler,
    image: LoadedImage,
    dst: str | Path,
    fmt: str | None = None,
    tile: int | str | None = None,
    strip_metadata: bool = False,
    progress=None,
) -> Path:
    """Upscale an image already read by :func:`~cxrsr.io.read_image` and write ``dst`` atomically (see
    :func:`upscale_file`, which reads and calls this)."""
    fmt = output_format(image, dst, fmt)
    sr = upscaler.upscale_array(image.array, tile=tile, progress=progress)
    return encode_upscaled(upscaler, image, sr, dst, fmt, strip_metadata)


def output_format(image: LoadedImage, dst: str | Path, fmt: str | None = None) -> str:
    """The format ``dst`` is written in; raises :class:`InputFileError`, before any upscaling, where the
    image cannot be written in it."""
    fmt = fmt or format_for_suffix(Path(dst).suffix) or default_format(image.path)
    if fmt == "dcm" and image.dicom is None:
        raise InputFileError(image.path, "DICOM output needs a DICOM input (its patient and study attributes); "
                                         "use --format png or tiff")
    if fmt == "dcm" and int(image.dicom.dataset.get("BitsAllocated", 16)) == 1:
        raise InputFileError(image.path, "a 1-bit DICOM (Bits Allocated 1) cannot hold an upscaled greyscale "
                                         "image; use --format png or tiff")
    return fmt


def encode_upscaled(upscaler: Upscaler, image: LoadedImage, sr: np.ndarray, dst: str | Path, fmt: str,
                    strip_metadata: bool = False) -> Path:
    """Write the upscaled pixels ``sr`` of ``image`` to ``dst`` in ``fmt`` (from :func:`output_format`),
    atomically: a derived DICOM instance, or PNG / TIFF / JPEG with a note that they are derived."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    description = derivation_description(upscaler)
    if fmt == "dcm":
        values = values_from_unit(sr, image.dicom, upscaler.scale)
        stored = stored_from_values(values, image.dicom.dataset)
        write_dicom(dst, derived_dataset(image.dicom, stored, upscaler.scale, description,
                                         weights=Path(upscaler.weights_name).name))
        return dst
    text = None if strip_metadata else {"Software": f"cxrsr {__version__}", "Description": description}
    return write_image(output_array(image, sr, fmt), dst, fmt, text=text)


def derivation_description(upscaler: Upscaler) -> str:
    weights = Path(upscaler.weights_name).name
    steps = upscaler.consistency
    then = f", {steps} back-projection steps onto the input" if steps else ""
    return (f"Derived image: {upscaler.scale}x super-resolution by cxrsr {__version__} (Swift-SRGAN, "
            f"weights {weights}{then}); detail is inferred by a neural network, not measured")


def output_array(image: LoadedImage, sr: np.ndarray, fmt: str) -> np.ndarray:
    """Convert upscaled pixels to what ``fmt`` can hold, keeping bit depth wherever the format allows."""
    if image.format == "dicom":  # display-polarity values in [0, 1] -> the full 16-bit range
        sr = _rescale(sr, 0.0, 1.0, 65535).astype(np.uint16)
    elif sr.dtype.kind == "f" and fmt != "tiff":  # float images: TIFF keeps floats, other formats get 16 bits
        sr = _rescale(sr, float(sr.min()), float(sr.max()), 65535).astype(np.uint16)
    if fmt == "jpeg" and sr.dtype != np.uint8:
        log.warning("%s: JPEG output is 8-bit; the 16-bit result is reduced to 8 bits (use png or tiff to keep it)",
                    image.path)
        sr = _rescale(sr, float(sr.min()), float(sr.max()), 255).astype(np.uint8)
    if fmt == "png" and sr.dtype == np.uint16 and sr.ndim == 3 and sr.shape[2] > 1:
        raise InputFileError(image.path, "16-bit colour output cannot be written as PNG here; use --format tiff")
    return sr


def _rescale(a: np.ndarray, lo: float, hi: float, top: int) -> np.ndarray:
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.float64)
    return np.rint(np.clip((a.astype(np.float64) - lo) / (hi - lo), 0, 1) * top)
