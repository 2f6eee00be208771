"""What a file is, from its content, and how big its image is, from its header: both before any pixel is decoded.

The content decides, not the name: a PNG called ``.dcm`` is read as a PNG, a DICOM without an extension as a
DICOM. The header's size is checked against a pixel limit before decoding, so a file that claims (or would
decompress to) a huge image is refused without the memory being spent.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from .errors import InputFileError

#: The most pixels (all frames together) any reader decodes: twice Pillow's warning threshold, which is
#: where Pillow itself refuses (about 179 megapixels, e.g. 13000 x 13000).
MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS

DICOM_SUFFIXES = {".dcm", ".dicom"}


def sniff(head: bytes) -> str | None:
    """The format from a file's first 132 bytes: 'dicom', 'png', 'jpeg', 'tiff', or None (unknown).
    DICOM is checked first: its 128-byte preamble may itself hold a TIFF header (dual-format files)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return None


def sniff_file(path: Path) -> str | None:
    """:func:`sniff` on a file; None for anything but a readable regular file (a FIFO is never opened)."""
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            return sniff(f.read(132))
    except OSError:
        return None


def file_kind(path: Path) -> str:
    """How to read ``path``: 'dicom', 'tiff' or 'pillow' (PNG, JPEG and the other formats Pillow knows).
    The content decides; a .dcm/.dicom name without a DICOM preamble is tried as DICOM (older files)."""
    kind = sniff_file(path)
    if kind == "dicom" or (kind is None and path.suffix.lower() in DICOM_SUFFIXES):
        return "dicom"
    if kind == "tiff":
        return "tiff"
    return "pillow"


def check_size(path: Path, width: int, height: int, frames: int = 1, limit: int = MAX_PIXELS) -> None:
    """Refuse an image whose header claims more than ``limit`` pixels (all frames), or no pixels at all."""
    if width <= 0 or height <= 0:
        raise InputFileError(path, f"header gives an image of {width}x{height} pixels")
    if width * height * max(frames, 1) > limit:
        frames_text = f" x {frames} frames" if frames > 1 else ""
        raise InputFileError(path, f"image is too large to decode safely: its header gives {width}x{height} "
                                   f"pixels{frames_text}, over the limit of {limit} pixels")
