"""DICOM in and out.

Reading: stored values -> modality LUT (slope/intercept or LUT) -> a window -> [0, 1], MONOCHROME1 inverted
so that bone is bright, as the network was trained. Writing: the inverse, into a new derived instance that
keeps the patient and study modules, the bit depth and pixel representation; gets 4x Rows/Columns, pixel
spacings divided by 4, DERIVED\\SECONDARY, a Derivation Description, Source Image and Derivation Code
Sequences, and a Contributing Equipment Sequence naming cxrsr, its version and the weights (IHE AI Results).

Its SOP Instance and Series Instance UIDs are derived from the source's UIDs, the scale and the weights name:
the same input upscaled with the same weights always gets the same UIDs, so a repeated delivery replaces the
earlier copy in a PACS instead of duplicating it, and all instances of one source series land in one derived
series.

Tag values are patient data: nothing here logs or prints them.
"""

from __future__ import annotations

import copy
import datetime as _dt
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .atomic import atomic_path
from .errors import InputFileError
from .probe import check_size, file_kind
from .quiet import quiet

if TYPE_CHECKING:  # pydicom is imported where it is used, to keep start-up quick
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

#: Named windows (centre, width) in modality units (Hounsfield units for CT).
WINDOWS = {"lung": (-600.0, 1500.0), "mediastinum": (40.0, 400.0)}

#: Attributes holding a physical pixel size: divided by the scale factor wherever they occur (also nested).
SPACING_KEYWORDS = (
    "PixelSpacing",
    "ImagerPixelSpacing",
    "NominalScannedPixelSpacing",
    "PresentationPixelSpacing",
    "CompensatedImagerPixelSpacing",
)

#: Attributes that describe the old pixel matrix and would be wrong after resampling.
_STALE_KEYWORDS = ("IconImageSequence", "SmallestImagePixelValue", "LargestImagePixelValue",
                   "PixelPaddingRangeLimit", "RedPaletteColorLookupTableData")

#: Series Description of every derived series (LO, at most 64 characters).
SERIES_DESCRIPTION = "Super-resolved x{scale} by cxrsr - not for diagnosis"

#: Codes of the derivation (DICOM CID 7202 / 7203) and of the contributing equipment's purpose: IHE AI Results
#: names an algorithm that made an instance with this code until DICOM assigns one.
SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
DERIVATION_CODE = ("113085", "DCM", "Spatial resampling")
PROCESSING_ALGORITHM = ("Newcode1", "99IHE", "Processing Algorithm")


@dataclass
class DicomSource:
    """What mapping an upscaled image back to the input's stored values needs."""

    dataset: "Dataset"
    values: np.ndarray  # modality-LUT values of the input (float32), original polarity
    monochrome1: bool
    low: float  # modality value mapped to 0.0 (before MONOCHROME1 inversion)
    high: float  # modality value mapped to 1.0

    @property
    def windowed(self) -> bool:
        """True when the window cuts off part of the image's value range."""
        return bool(self.values.min() < self.low or self.values.max() > self.high)


def parse_window(spec: str | tuple[float, float] | None) -> tuple[float, float] | None:
    """``full``/None (the image's own min..max), ``lung``, ``mediastinum`` or ``C,W`` -> (centre, width)."""
    if spec is None:
        return None
    if isinstance(spec, tuple):
        centre, width = spec
    else:
        name = spec.strip().lower()
        if name == "full":
            return None
        if name in WINDOWS:
            return WINDOWS[name]
        try:
            centre, width = (float(v) for v in name.split(","))
        except ValueError:
            raise ValueError(f"window must be full, lung, mediastinum or CENTRE,WIDTH; got {spec!r}") from None
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    return float(centre), float(width)


def looks_like_dicom(path: Path) -> bool:
    """True for a regular file with the DICOM preamble ('DICM' at byte 128), or a .dcm/.dicom file that is
    not recognisably another image format (older DICOM files have no preamble)."""
    return path.is_file() and file_kind(path) == "dicom"


def read_dicom(path: Path, window: str | tuple[float, float] | None = None) -> tuple[np.ndarray, DicomSource]:
    """Return the image as float32 in [0, 1] (display polarity) and the source record.

    pydicom decodes each data element when it is first used, so a damaged element can raise anywhere
    below: whatever it raises becomes one InputFileError naming the file."""
    centre_width = parse_window(window)  # a bad window is the caller's error, raised as ValueError
    try:
        return _read_dicom(path, centre_width)
    except InputFileError:
        raise
    except MemoryError:
        raise InputFileError(path, "not enough memory to decode this DICOM file") from None
    except Exception as exc:
        raise InputFileError(path, f"corrupt DICOM data ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:160]


def _read_dicom(path: Path, centre_width: tuple[float, float] | None) -> tuple[np.ndarray, DicomSource]:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        ds = _read_without_preamble(path)
    except MemoryError:
        raise InputFileError(path, "DICOM header claims more memory than is available") from None
    except Exception as exc:
        raise InputFileError(path, f"corrupt or truncated DICOM file ({type(exc).__name__})") from None
    if "PixelData" not in ds:
        if any(k in ds for k in ("FloatPixelData", "DoubleFloatPixelData")):
            raise InputFileError(path, "DICOM float pixel data is not supported; integer PixelData expected")
        raise InputFileError(path, "DICOM file has no pixel data (PixelData element missing)")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputFileError(path, f"photometric interpretation {photometric or 'missing'} is not supported; "
                                   "greyscale (MONOCHROME1/2) DICOM expected")
    frames = _check_header(path, ds)
    if frames > 1:
        raise InputFileError(path, f"multi-frame DICOM ({frames} frames) is not supported; "
                                   "split it into single-frame files first")
    try:
        with warnings.catch_warnings(record=True) as caught, quiet():
            warnings.simplefilter("always")
            stored = ds.pixel_array
    except Exception as exc:
        raise InputFileError(path, _decode_failure(ds, exc)) from None
    for warning in caught:  # e.g. excess padding after the pixels: one line, naming the file
        log.warning("%s: %s", path, str(warning.message).splitlines()[0][:200])
    if stored.ndim != 2:
        raise InputFileError(path, f"pixel data has shape {stored.shape}; one 2-D greyscale frame expected")
    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    if centre_width is None:
        low, high = float(values.min()), float(values.max())
    else:
        centre, width = centre_width
        low, high = centre - width / 2, centre + width / 2
    unit = np.clip((values - low) / (high - low), 0.0, 1.0) if high > low else np.zeros_like(values)
    monochrome1 = photometric == "MONOCHROME1"
    if monochrome1:
        unit = 1.0 - unit
    source = DicomSource(ds, values.astype(np.float32), monochrome1, low, high)
    return unit.astype(np.float32), source


def _read_without_preamble(path: Path):
    """Older DICOM files start with the first data element, without the 128-byte preamble and 'DICM'.
    Read them only when the result is plainly DICOM (an image module), never text taken as tags."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
        plausible = "PixelData" in ds and ("Rows" in ds or "SOPClassUID" in ds)
    except Exception:
        plausible = False
    if not plausible:
        raise InputFileError(path, "not a valid DICOM file (no DICOM preamble and no DICOM image header)")
    return ds


def _check_header(path: Path, ds) -> int:
    """The image attributes pixel decoding relies on: present, consistent, and within the pixel limit.
    Returns the number of frames."""
    missing = [k for k in ("Rows", "Columns", "BitsAllocated") if ds.get(k) in (None, "")]
    if missing:
        raise InputFileError(path, f"DICOM header lacks {', '.join(missing)}; the pixel data cannot be interpreted")
    frames = ds.get("NumberOfFrames", 1)
    try:
        frames = int(frames or 1)
    except (TypeError, ValueError):
        raise InputFileError(path, "DICOM Number of Frames is not a number") from None
    check_size(path, int(ds.Columns), int(ds.Rows), frames)
    allocated, stored = int(ds.BitsAllocated), int(ds.get("BitsStored", ds.BitsAllocated) or 0)
    if allocated not in (1, 8, 16, 32, 64) or not 0 < stored <= allocated:
        raise InputFileError(path, f"DICOM bit depth is inconsistent (Bits Allocated {allocated}, Bits Stored "
                                   f"{stored})")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise InputFileError(path, f"DICOM has {samples} samples per pixel (colour); greyscale expected")
    return frames


def _decode_failure(ds, exc: Exception) -> str:
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    name = getattr(syntax, "name", None) or "this transfer syntax"
    if syntax is not None and not getattr(syntax, "is_transfer_syntax", False):
        name = f"an unknown transfer syntax ({str(syntax)[:64]!r})"  # damaged or private: quoted, not trusted
    text = str(exc).lower()
    if isinstance(exc, (NotImplementedError, RuntimeError)) and ("plugin" in text or "decod" in text or "handler" in text):
        hint = "JPEG 2000 needs the MIT-licensed decoders cxrsr installs: pip install pylibjpeg pylibjpeg-openjpeg"
        if str(syntax) in ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"):
            hint = 'JPEG-LS needs pyjpegls (MIT), installed by pip install "cxrsr[dicom-node]"'
        elif syntax is not None and str(syntax).startswith("1.2.840.10008.1.2.4.") and str(syntax) not in (
            "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
            "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
        ):
            hint = ("JPEG lossless decoding needs pylibjpeg-libjpeg (GPLv3, not installed by cxrsr): "
                    'pip install "cxrsr[jpeg-gpl]"')
        return f"cannot decode {name}: no decoder installed ({hint})"
    return f"cannot decode pixel data of {name} ({type(exc).__name__})"


def values_from_unit(unit: np.ndarray, source: DicomSource, scale: int) -> np.ndarray:
    """Map an upscaled [0, 1] display image back to modality values. Where a window cut the input's range,
    pixels whose bicubic upscale lies outside the window take the bicubic value, so no HU is lost."""
    u = 1.0 - unit.astype(np.float64) if source.monochrome1 else unit.astype(np.float64)
    values = u * (source.high - source.low) + source.low
    if source.windowed:
        h, w = source.values.shape
        bicubic = np.asarray(Image.fromarray(source.values).resize((w * scale, h * scale), Image.BICUBIC),
                             dtype=np.float64)
        outside = (bicubic < source.low) | (bicubic > source.high)
        # bicubic overshoots at edges: keep the fallback within the input's own value range
        np.clip(bicubic, float(source.values.min()), float(source.values.max()), out=bicubic)
        values = np.where(outside, bicubic, values)
    return values


def stored_from_values(values: np.ndarray, ds) -> np.ndarray:
    """Invert the modality LUT and round into the input's stored range and dtype."""
    bits_stored = int(ds.get("BitsStored", 16))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lo, hi = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)
    if "ModalityLUTSequence" in ds:
        item = ds.ModalityLUTSequence[0]
        entries, first = int(item.LUTDescriptor[0]) or 65536, int(item.LUTDescriptor[1])
        lut = np.asarray(item.LUTData, dtype=np.float64).ravel()[:entries]
        if np.any(np.diff(lut) < 0):
            raise ValueError("the input's Modality LUT is not monotonic; DICOM output cannot invert it")
        stored = np.interp(values, lut, np.arange(entries) + first)
    else:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        stored = (values - intercept) / slope
    allocated = int(ds.get("BitsAllocated", 16))
    dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16}.get(
        (allocated, signed), np.int32 if signed else np.uint32)
    return np.clip(np.rint(stored), lo, hi).astype(dtype)


def derived_dataset(source: DicomSource, stored: np.ndarray, scale: int, description: str,
                    weights: str = "custom"):
    """A new DICOM instance for the upscaled pixels ``stored``, derived from ``source.dataset`` by the network
    with weights named ``weights`` (which, with the source UIDs and the scale, fixes the new UIDs)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian
    from pydicom.valuerep import format_number_as_ds

    from .. import __version__

    src = source.dataset
    ds = copy.deepcopy(src)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword in _STALE_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    for tag in [t for t in ds.keys() if 0x6000 <= t.group <= 0x60FF]:  # overlays drawn on the old matrix
        del ds[tag]
    photometric = "MONOCHROME1" if source.monochrome1 else "MONOCHROME2"
    bits_stored = int(src.get("BitsStored", stored.itemsize * 8))
    if stored.itemsize <= 2:
        ds.set_pixel_data(stored, photometric, bits_stored)
    else:  # 32-bit pixels: set_pixel_data takes 8 and 16 bits only; uncompressed 32-bit is plain DICOM
        ds.Rows, ds.Columns = stored.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, bits_stored, bits_stored - 1
        ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
        ds.PixelData = np.ascontiguousarray(stored.astype(stored.dtype.newbyteorder("<"))).tobytes()
    ds.SOPInstanceUID = derived_uid("instance", src.get("SOPInstanceUID"), scale, weights)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = derived_uid("series", src.get("SeriesInstanceUID"), scale, weights)
    ds.SeriesNumber = (int(src.SeriesNumber) if src.get("SeriesNumber") not in (None, "") else 0) + 1000
    ds.SeriesDescription = SERIES_DESCRIPTION.format(scale=scale)
    image_type = list(src.get("ImageType", []))
    ds.ImageType = ["DERIVED", "SECONDARY"] + [str(v) for v in image_type[2:]]
    ds.DerivationDescription = description[:1024]
    reference = Dataset()
    reference.ReferencedSOPClassUID = src.SOPClassUID
    reference.ReferencedSOPInstanceUID = src.SOPInstanceUID
    reference.PurposeOfReferenceCodeSequence = Sequence([_code(*SOURCE_PURPOSE)])
    ds.SourceImageSequence = Sequence([reference])
    ds.DerivationCodeSequence = Sequence([_code(*DERIVATION_CODE)])
    now = _dt.datetime.now()
    equipment = Dataset()
    equipment.Manufacturer = "cxrsr"
    equipment.ManufacturerModelName = f"cxrsr Swift-SRGAN x{scale}"
    equipment.SoftwareVersions = [f"cxrsr {__version__}"[:64], f"weights {weights}"[:64]]
    equipment.ContributionDateTime = now.strftime("%Y%m%d%H%M%S")
    equipment.ContributionDescription = f"{scale}x super-resolution, weights {weights}"[:1024]
    equipment.PurposeOfReferenceCodeSequence = Sequence([_code(*PROCESSING_ALGORITHM)])
    earlier = list(ds.get("ContributingEquipmentSequence", []))  # equipment that contributed before cxrsr
    ds.ContributingEquipmentSequence = Sequence(earlier + [equipment])
    ds.InstanceCreationDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = ds.ContentTime = now.strftime("%H%M%S")
    _shift_position(ds, src, scale)
    _divide_spacings(ds, scale, format_number_as_ds)
    return ds


def derived_uid(kind: str, source_uid, scale: int, weights: str) -> str:
    """A UID for the derived ``kind`` ('instance' or 'series') of ``source_uid``: the same inputs always give
    the same UID. A source without the UID (a damaged header) gets a random one."""
    from pydicom.uid import generate_uid

    if source_uid in (None, ""):
        return generate_uid()
    return generate_uid(entropy_srcs=["cxrsr", kind, str(source_uid), f"x{scale}", weights])


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _divide_spacings(ds, scale: int, fmt) -> None:
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                _divide_spacings(item, scale, fmt)
        elif element.keyword in SPACING_KEYWORDS and element.value not in (None, ""):
            values = element.value if element.VM > 1 else [element.value]
            element.value = [fmt(float(v) / scale) for v in values]


def _shift_position(ds, src, scale: int) -> None:
    """Image Position (Patient) is the centre of the first pixel: after 4x the first output pixel's centre
    lies (scale - 1) / (2 * scale) of an input pixel up and left of the input's."""
    if not all(k in src for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")):
        return
    from pydicom.valuerep import format_number_as_ds

    position = np.array([float(v) for v in src.ImagePositionPatient])
    orientation = np.array([float(v) for v in src.ImageOrientationPatient])
    row_spacing, col_spacing = (float(v) for v in src.PixelSpacing)
    shift = (scale - 1) / (2 * scale)
    position -= shift * (col_spacing * orientation[:3] + row_spacing * orientation[3:])
    ds.ImagePositionPatient = [format_number_as_ds(float(v)) for v in position]


def write_dicom(path: Path, ds) -> None:
    """Save atomically (temporary name in the same folder, then rename), Explicit VR Little Endian."""
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
