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
from .probe import check_size
from .quiet import quiet

log = logging.getLogger(__name__)

#: More pages than this are refused before tifffile builds its series, which visits every page (about 60 us
#: each); a pyramid's reduced-resolution pages, the only extra pages cxrsr accepts, number a few dozen at most.
MAX_TIFF_PAGES = 1024


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


def read_raster(path: Path, kind: str = "pillow") -> tuple[np.ndarray, str]:
    """Read a PNG / JPEG / TIFF (or any single image Pillow knows) as an array at its stored bit depth.
    ``kind`` is 'tiff' (tifffile, falling back to Pillow for compressions it cannot decode) or 'pillow'.
    Returns the array and the format's name in lower case ('png', 'jpeg', 'tiff', 'bmp', ...)."""
    if kind == "tiff":
        return _read_tiff(path), "tiff"
    return _read_pillow(path)


def _read_pillow(path: Path) -> tuple[np.ndarray, str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. "Corrupt EXIF data": damage is reported below
            # X-rays are large: accept up to MAX_PIXELS (Pillow's own hard limit) without a warning; the size
            # is checked from the header below before anything is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_size(path, image.width, image.height)
                frames = getattr(image, "n_frames", 1)
                if frames > 1 and image.format != "MPO":  # MPO: the first frame is the primary image
                    raise InputFileError(path, f"{image.format} file holds {frames} frames (animated or multi-page); "
                                               "cxrsr upscales one 2-D image per file: save the frames as separate files")
                if image.format == "PNG" and _png_colour_16bit(image):
                    log.warning("%s: 16-bit colour PNG is decoded at 8 bits per channel (Pillow); convert it to "
                                "16-bit grey PNG or to TIFF to keep its full depth", path)
                image.load()
                fmt = (image.format or "image").lower()
                image = ImageOps.exif_transpose(image)
                return pil_to_array(image), fmt
    except InputFileError:
        raise
    except UnidentifiedImageError:
        raise InputFileError(path, "not an image file cxrsr can read (PNG, JPEG, TIFF or DICOM expected)") from None
    except Image.DecompressionBombError:
        raise InputFileError(path, "image is too large to decode safely (over Pillow's pixel limit)") from None
    except MemoryError:
        raise InputFileError(path, "not enough memory to decode this image") from None
    except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, EOFError, struct.error, ...
        raise InputFileError(path, f"corrupt or truncated image data ({_short(exc)})") from None


def _png_colour_16bit(image: Image.Image) -> bool:
    """True for a PNG stored with 16 bits per colour sample (Pillow decodes those to 8 bits): its raw mode,
    from the header Pillow has already parsed, is 'RGB;16B' or 'RGBA;16B'."""
    return image.mode in ("RGB", "RGBA") and any(str(tile.args).endswith(";16B") for tile in image.tile)


def _read_tiff(path: Path) -> np.ndarray:
    with quiet():
        return _decode_tiff(path)


def _decode_tiff(path: Path) -> np.ndarray:
    try:
        with tifffile.TiffFile(path) as tif:
            # Count the pages before anything walks them: counting indexes the whole chain of page offsets and
            # stops where the chain loops back on itself, while tifffile's page iterator (which ``series`` uses
            # on files without shape metadata) can follow such a loop forever: a 2 KB mutated TIFF whose second
            # page points back at the first kept ``series`` busy for as long as it was let run
            # (tests/test_fuzz.py, REGRESSIONS).
            pages = len(tif.pages)
            if pages > MAX_TIFF_PAGES:
                raise InputFileError(path, f"TIFF holds {pages} pages; cxrsr upscales one 2-D image per "
                                           "file: save the pages as separate files")
            if pages == 0 or len(tif.series) == 0:
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
            # Several full-resolution pages of different sizes are different images; only pages marked as
            # reduced-resolution copies (thumbnails, pyramid levels) are left out.
            full = [p for p in tif.pages if not (getattr(p, "subfiletype", 0) or 0) & 1]
            if len(full) > 1:
                sizes = ", ".join(f"{p.shape[1]}x{p.shape[0]}" for p in full[:4] if len(p.shape) >= 2)
                raise InputFileError(path, f"TIFF holds {len(full)} images (pages of {sizes}); cxrsr upscales one "
                                           "2-D image per file: save the pages as separate files")
            page = series.keyframe
            check_size(path, int(series.shape[series.axes.index("X")]), int(series.shape[series.axes.index("Y")]))
            axes = series.axes
            try:
                array = series.asarray()
            except (KeyError, ValueError) as exc:
                if "imagecodecs" not in str(exc):
                    raise
                return _tiff_by_pillow(path, page.compression)
            array = _photometric(path, array, axes, page)
            if int(page.photometric) == 3:
                axes += "S"  # palette indices became colour samples
            return _as_image(path, array, axes)
    except InputFileError:
        raise
    except MemoryError:
        raise InputFileError(path, "not enough memory to decode this TIFF") from None
    except Exception as exc:  # tifffile raises many exception kinds for damaged files
        raise InputFileError(path, f"corrupt or unreadable TIFF ({_short(exc)})") from None


def _as_image(path: Path, array: np.ndarray, axes: str) -> np.ndarray:
    """A decoded TIFF series as (H, W) or (H, W, samples) in a dtype the upscaler takes."""
    if array.size == 0:
        raise InputFileError(path, f"TIFF image has no pixels (shape {array.shape})")
    keep = [i for i, a in enumerate(axes) if a in "YXS"]
    array = array.reshape([array.shape[i] for i in keep]) if len(keep) < array.ndim else array
    axes = "".join(axes[i] for i in keep)
    if axes.startswith("S") and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)  # planar (S, H, W) to (H, W, S)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3):
        raise InputFileError(path, f"TIFF has {array.ndim} dimensions; one 2-D image (grey or RGB) expected")
    return _supported_dtype(path, array)


def _photometric(path: Path, array: np.ndarray, axes: str, page) -> np.ndarray:
    """Apply what the TIFF's photometric interpretation says the stored numbers mean: white-is-zero is
    inverted, palette indices become colours, CMYK becomes RGB. Anything else is taken as grey or RGB."""
    photometric = int(page.photometric)
    if photometric == 0:  # MINISWHITE: 0 is white
        if array.dtype == np.bool_:
            return ~array
        if np.issubdtype(array.dtype, np.unsignedinteger):
            return (np.iinfo(array.dtype).max if page.bitspersample >= 8 else (1 << page.bitspersample) - 1) - array
        if array.dtype.kind == "f" and array.size and 0.0 <= float(np.nanmin(array)) and float(np.nanmax(array)) <= 1.0:
            return 1.0 - array
        return -array.astype(np.float32) if array.dtype.kind in "fi" else array
    if photometric == 3:  # PALETTE
        colormap = page.colormap
        if colormap is None or array.dtype.kind not in "ub":
            raise InputFileError(path, "palette TIFF without a usable colour map")
        colours = np.asarray(colormap)
        if colours.ndim == 1:  # some files store a grey map
            colours = np.stack([colours] * 3)
        index = np.clip(array.astype(np.intp), 0, colours.shape[1] - 1)
        rgb = np.moveaxis(colours[:, index], 0, -1)
        if np.all(colours % 257 == 0):
            rgb = rgb // 257
            return rgb.astype(np.uint8)
        return rgb.astype(np.uint16)
    if photometric == 5:  # SEPARATED: CMYK when it has four inks
        if array.ndim != 3 or array.shape[-1] != 4 or array.dtype != np.uint8 or "S" not in axes[-1:]:
            raise InputFileError(path, f"separated (CMYK) TIFF with {array.shape[-1] if array.ndim == 3 else 1} "
                                       f"samples of {array.dtype} is not supported; 8-bit CMYK or RGB/grey expected")
        return np.asarray(Image.fromarray(array, mode="CMYK").convert("RGB"))
    return array


def _tiff_by_pillow(path: Path, compression) -> np.ndarray:
    """TIFFs whose compression tifffile needs imagecodecs for (JPEG, LZW): Pillow decodes the common ones."""
    try:
        array, _ = _read_pillow(path)
    except InputFileError:
        name = getattr(compression, "name", str(compression))
        raise InputFileError(path, f"TIFF compression {name} cannot be decoded here; install imagecodecs "
                                   "(pip install imagecodecs) or save the TIFF uncompressed") from None
    return array


def _supported_dtype(path: Path, array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype.kind == "c":
        raise InputFileError(path, f"complex-valued pixels ({array.dtype}) are not an image cxrsr can upscale")
    if array.dtype.kind not in "uif":
        raise InputFileError(path, f"pixels of type {array.dtype} are not supported")
    if np.issubdtype(array.dtype, np.integer) and array.size and array.min() >= 0 and array.max() <= 65535:
        return array.astype(np.uint16)
    if array.dtype == np.float64 and np.isfinite(array).all() and np.abs(array).max() > np.finfo(np.float32).max:
        raise InputFileError(path, "pixel values exceed the float32 range; rescale the image first")
    return array.astype(np.float32)


def write_raster(array: np.ndarray, path: Path, fmt: str, text: dict[str, str] | None = None) -> None:
    """Write ``array`` (uint8, uint16 or float32) as ``fmt`` ('png', 'tiff' or 'jpeg') to ``path``.

    ``text`` ('Software', 'Description') is stored as PNG text chunks, TIFF tags or a JPEG comment; with
    ``text=None`` the file carries no metadata at all."""
    text = text or {}
    if fmt == "tiff":
        channels = array.shape[2] if array.ndim == 3 else 1
        photometric = "rgb" if channels >= 3 else "minisblack"
        layout = {"planarconfig": "contig", "extrasamples": ["unassalpha"]} if channels in (2, 4) else {}
        tifffile.imwrite(path, array, photometric=photometric, compression="zlib", metadata=None,
                         software=text.get("Software", False), description=text.get("Description"), **layout)
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
