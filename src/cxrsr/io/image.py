"""One entry point for reading any supported input file and writing any supported output format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .dicom import DicomSource, read_dicom
from .errors import InputFileError
from .probe import file_kind
from .raster import read_raster, write_raster

MIN_SIDE = 4
INPUT_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom"}
OUTPUT_FORMATS = {"png": ".png", "tiff": ".tif", "jpeg": ".jpg", "dcm": ".dcm"}


@dataclass
class LoadedImage:
    """An input image: ``array`` is (H, W) or (H, W, C) uint8 / uint16 / float32 as stored
    (DICOM: float32 in [0, 1], display polarity), plus where it came from."""

    array: np.ndarray
    path: Path
    format: str  # "png", "jpeg", "tiff", "dicom" or another Pillow format name in lower case
    dicom: DicomSource | None = None


def read_image(path: str | Path, window: str | tuple[float, float] | None = None) -> LoadedImage:
    """Read an input file, or raise :class:`InputFileError` naming the file and the problem.

    ``window`` applies to DICOM only: ``full`` (default, the image's own range), ``lung``, ``mediastinum``
    or ``C,W`` in modality units (Hounsfield units for CT)."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise InputFileError(path, "broken symbolic link (or a loop of links)")
    if not path.exists():
        raise InputFileError(path, "no such file")
    if not path.is_file():
        raise InputFileError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise InputFileError(path, "empty file (0 bytes)")
    kind = file_kind(path)
    if kind == "dicom":
        array, source = read_dicom(path, window)
        image = LoadedImage(array, path, "dicom", source)
    else:
        array, fmt = read_raster(path, kind)
        image = LoadedImage(array, path, fmt)
    check_array(image.array, path)
    return image


def check_array(array: np.ndarray, path: str | Path = "<array>") -> None:
    """Reject arrays the upscaler cannot take: wrong rank, too few pixels, unsupported channel counts."""
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise InputFileError(path, f"unsupported image shape {array.shape}; (H, W) or (H, W, 1-4) expected")
    h, w = array.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise InputFileError(path, f"image is {w}x{h} pixels; the minimum is {MIN_SIDE}x{MIN_SIDE}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputFileError(path, "image contains NaN or infinite values")


def write_image(array: np.ndarray, path: str | Path, fmt: str | None = None,
                text: dict[str, str] | None = None) -> Path:
    """Write a PNG, TIFF or JPEG atomically: to a hidden temporary file in the same folder, renamed to
    ``path`` when complete, so that an interrupted run never leaves a partial file under the final name.
    ``text`` is stored as the file's descriptive metadata (none when None)."""
    path = Path(path)
    fmt = fmt or format_for_suffix(path.suffix)
    if fmt not in ("png", "tiff", "jpeg"):
        raise ValueError(f"cannot write {path.name} as an image: use a .png, .tif or .jpg name or pass fmt")
    with atomic_path(path) as tmp:
        write_raster(array, tmp, fmt, text)
    return path


def format_for_suffix(suffix: str) -> str | None:
    """The output format a file suffix names ('.png' -> 'png', '.tiff' -> 'tiff', '.dcm' -> 'dcm'), or None."""
    suffix = suffix.lower()
    aliases = {".tiff": "tiff", ".jpeg": "jpeg", ".dicom": "dcm"}
    return aliases.get(suffix) or next((f for f, ext in OUTPUT_FORMATS.items() if ext == suffix), None)
