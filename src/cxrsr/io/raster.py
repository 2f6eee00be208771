"""PNG, JPEG and TIFF: reading to numpy arrays that keep the file's bit depth, and writing them back."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from .errors import InputFileError

log = logging.getLogger(__name__)

TIFF_SUFFIXES = {".tif", ".tiff"}


def pil_to_array(image: Image.Image) -> np.ndarray:
    """Pixels of a PIL image as (H, W) or (H, W, C) uint8 / uint16 / float32, keeping 16-bit depth."""
    mode = image.mode
    if mode in ("L", "RGB", "RGBA", "LA"):
        return np.asarray(image)
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if mode == "I":
        a = np.asarray(image)
        if a.size and a.min() >= 0 and a.max() <= 65535:
            return a.astype(np.uint16)
        return a.astype(np.float32)
    if mode == "F":
        return np.asarray(image, dtype=np.float32)
    if mode == "1":
        return np.asarray(image.convert("L"))
    if mode in ("P", "PA"):
        has_alpha = "transparency" in image.info or mode == "PA"
        return np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    return np.asarray(image.convert("RGB"))  # CMYK, YCbCr, LAB, HSV


def array_to_pil(array: np.ndarray) -> Image.Image:
    """Inverse of :func:`pil_to_array` for the array kinds it returns."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype == np.uint16:
        if array.ndim != 2:
            raise ValueError("PIL cannot hold 16-bit colour images; use a numpy array or TIFF")
    return Image.fromarray(array)  # uint16 -> "I;16", float32 -> "F", uint8 -> "L" / "LA" / "RGB" / "RGBA"


def read_raster(path: Path) -> np.ndarray:
    """Read a PNG / JPEG / TIFF (or any format Pillow knows) as an array at its stored bit depth."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _read_tiff(path)
    try:
        with warnings.catch_warnings():
            # X-rays are large: accept up to Pillow's hard limit (about 179 megapixels) without a warning;
            # beyond it Pillow raises DecompressionBombError, reported below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                return pil_to_array(image)
    except UnidentifiedImageError:
        raise InputFileError(path, "not an image file Pillow can read (PNG, JPEG, TIFF or DICOM expected)") from None
    except Image.DecompressionBombError:
        raise InputFileError(path, "image is too large to decode safely (over Pillow's pixel limit)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputFileError(path, f"corrupt or truncated image data ({_short(exc)})") from None


def _read_tiff(path: Path) -> np.ndarray:
    try:
        with tifffile.TiffFile(path) as tif:
            if len(tif.series) == 0:
                raise InputFileError(path, "TIFF file holds no image")
            series = tif.series[0]
            # Pages, slices, frames or time points (any axis but height, width and colour samples) are
            # refused by name: taking them as colour channels would silently make a wrong image.
            stacked = {a: n for a, n in zip(series.axes, series.shape) if a not in "YXS" and n > 1}
            if stacked:
                count = int(np.prod(list(stacked.values())))
                raise InputFileError(path, f"TIFF holds a stack of {count} images (axes {series.axes}, shape "
                                           f"{tuple(series.shape)}); cxrsr upscales one 2-D image per file: "
                                           "save the pages as separate files")
            axes = series.axes
            array = series.asarray()
    except InputFileError:
        raise
    except Exception as exc:  # tifffile raises many exception kinds for damaged files
        raise InputFileError(path, f"corrupt or unreadable TIFF ({_short(exc)})") from None
    keep = [i for i, a in enumerate(axes) if a in "YXS"]
    array = array.reshape([array.shape[i] for i in keep]) if len(keep) < array.ndim else array
    axes = "".join(axes[i] for i in keep)
    if axes.startswith("S") and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)  # planar (S, H, W) to (H, W, S)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3):
        raise InputFileError(path, f"TIFF has {array.ndim} dimensions; one 2-D image (grey or RGB) expected")
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer) and array.min() >= 0 and array.max() <= 65535:
        return array.astype(np.uint16)
    return array.astype(np.float32)


def write_raster(array: np.ndarray, path: Path, fmt: str, text: dict[str, str] | None = None) -> None:
    """Write ``array`` (uint8, uint16 or float32) as ``fmt`` ('png', 'tiff' or 'jpeg') to ``path``.

    ``text`` ('Software', 'Description') is stored as PNG text chunks, TIFF tags or a JPEG comment; with
    ``text=None`` the file carries no metadata at all."""
    text = text or {}
    if fmt == "tiff":
        photometric = "rgb" if array.ndim == 3 and array.shape[2] >= 3 else "minisblack"
        tifffile.imwrite(path, array, photometric=photometric, compression="zlib", metadata=None,
                         software=text.get("Software", False), description=text.get("Description"))
        return
    if fmt == "jpeg":
        if array.dtype != np.uint8:
            raise ValueError("JPEG holds 8-bit images only")
        if array.ndim == 3 and array.shape[2] in (2, 4):  # JPEG has no alpha channel
            array = array[:, :, : array.shape[2] - 1]
        comment = "; ".join(text.values()).encode()
        array_to_pil(array).save(path, format="JPEG", quality=95, **({"comment": comment} if comment else {}))
        return
    if fmt == "png":
        if array.dtype == np.float32:
            raise ValueError("PNG holds integer images only")
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
        array_to_pil(array).save(path, format="PNG", compress_level=4, pnginfo=info)
        return
    raise ValueError(f"unknown output format {fmt!r}")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]
