"""DICOM input: pixel data through the modality LUT, MONOCHROME1 turned to display polarity.

Tag values are patient data: nothing here logs or prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputFileError

DICOM_SUFFIXES = {".dcm", ".dicom"}


@dataclass
class DicomSource:
    """What a DICOM writer needs to map an upscaled image back to the input's stored values."""

    dataset: "pydicom.Dataset"  # noqa: F821 - pydicom is imported lazily
    monochrome1: bool
    low: float  # modality-LUT value that maps to 0.0
    high: float  # modality-LUT value that maps to 1.0


def looks_like_dicom(path: Path) -> bool:
    """True for a .dcm/.dicom name or a file with the DICOM preamble ('DICM' at byte 128)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def read_dicom(path: Path) -> tuple[np.ndarray, DicomSource]:
    """Return the image as float32 in [0, 1] (min-max over the modality-LUT values; MONOCHROME1 inverted
    so that bone is bright, as the network was trained) and the source record."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise InputFileError(path, "not a valid DICOM file") from None
    except Exception as exc:
        raise InputFileError(path, f"corrupt or truncated DICOM file ({type(exc).__name__})") from None
    if "PixelData" not in ds:
        raise InputFileError(path, "DICOM file has no pixel data (PixelData element missing)")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputFileError(path, f"photometric interpretation {photometric or 'missing'} is not supported; "
                                   "greyscale (MONOCHROME1/2) DICOM expected")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise InputFileError(path, f"multi-frame DICOM ({frames} frames) is not supported; one frame per file expected")
    try:
        stored = ds.pixel_array
    except Exception as exc:
        syntax = ds.file_meta.get("TransferSyntaxUID") if "file_meta" in dir(ds) else None
        name = getattr(syntax, "name", "unknown transfer syntax")
        msg = str(exc)
        if "plugin" in msg.lower() or "handler" in msg.lower() or isinstance(exc, NotImplementedError):
            raise InputFileError(path, f"cannot decode {name}: no installed decoder "
                                       "(JPEG 2000 needs 'pip install pylibjpeg pylibjpeg-openjpeg')") from None
        raise InputFileError(path, f"cannot decode pixel data ({type(exc).__name__})") from None
    if stored.ndim != 2:
        raise InputFileError(path, f"pixel data has shape {stored.shape}; one 2-D greyscale frame expected")
    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    unit = (values - low) / (high - low) if high > low else np.zeros_like(values)
    monochrome1 = photometric == "MONOCHROME1"
    if monochrome1:
        unit = 1.0 - unit
    return unit.astype(np.float32), DicomSource(dataset=ds, monochrome1=monochrome1, low=low, high=high)
