"""A corpus of hostile and unusual input files, written by code from real chest X-rays, and the checks every
case must pass in the readers and in ``cxrsr upscale``.

Each case is a file in one folder plus what must happen to it:

* ``ok``: it is read and upscaled;
* ``error``: a one-line error names the file (and, where given, says ``reason``);
* ``any``: either (bit flips in a JPEG may still decode, and that is not wrong).

The rules checked for every case (see :func:`check_reader` and :func:`check_cli`): only cxrsr's own input error
escapes a reader; the CLI prints one error line naming the file and exits 1; nothing is left under a final
output name for a failed file; the input is byte-identical afterwards; the other files of the batch are done;
no case runs longer than ``CASE_SECONDS``; a reader never needs more than ``READER_MEMORY`` bytes.

``benchmarks/reliability.py`` runs the same corpus and tabulates the results by family.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

CASE_SECONDS = 20.0  # per case, reader or CLI
CLI_SECONDS = 120.0  # a whole CLI run over the corpus takes this plus 2 s per case at most
READER_MEMORY = 4 << 30  # address-space limit of the reader worker (bytes)
CLI_MEMORY = 4 << 30  # peak resident memory of the CLI run


@dataclass
class Case:
    family: str
    name: str  # file name in the corpus folder (may hold non-UTF-8 bytes via surrogate escapes)
    expect: str  # "ok", "error" or "any"
    reason: str = ""  # lower-case text the error message must contain
    explicit: bool = False  # passed to the CLI by name (a folder walk does not pick it up)
    like_seed: bool = False  # when read, its grey version must match the seed image (no silent reinterpretation)
    cli: str = ""  # what the CLI (default output format) must do, when it differs from ``expect``


@dataclass
class Seeds:
    """Real files the corpus is made from."""

    png: Path  # a real 8-bit chest X-ray PNG
    jpeg: Path  # a real chest X-ray JPEG
    dicom: Path  # a real CR chest DICOM (MONOCHROME1, 15 bits)
    size: int = 96  # side of the small versions, to keep upscaling quick

    def grey(self) -> np.ndarray:
        with Image.open(self.png) as im:
            return np.asarray(im.convert("L").resize((self.size, self.size), Image.LANCZOS))


def build_corpus(folder: Path, seeds: Seeds) -> list[Case]:
    """Write every case into ``folder`` (created) and return their descriptions."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    for family in (_damaged, _extensions, _huge, _pixel_formats, _values, _stacks, _dicom, _names):
        cases += family(folder, seeds)
    stems = [Path(c.name).stem for c in cases]
    assert len(set(stems)) == len(stems), "two cases share a stem: their outputs would share a name"
    return cases


# ----------------------------------------------------------------------------------------------- families


def _damaged(folder: Path, seeds: Seeds) -> list[Case]:
    """Empty, truncated and bit-flipped PNG, JPEG, TIFF and DICOM, from real files."""
    grey = seeds.grey()
    originals = {
        "png": _png_bytes(grey),
        "jpg": _jpeg_bytes(grey),
        "tif": _tiff_bytes((grey.astype(np.uint16) * 257), compression="zlib"),
        "dcm": _small_dicom_bytes(seeds),
    }
    full_size = {"png": seeds.png.read_bytes(), "jpg": seeds.jpeg.read_bytes()}
    rng = np.random.default_rng(14)
    cases = []
    for ext, data in originals.items():
        _write(folder / f"damaged-empty-{ext}.{ext}", b"")
        cases.append(Case("damaged", f"damaged-empty-{ext}.{ext}", "error", "empty"))
        for label, cut in (("head", 20), ("half", len(data) // 2), ("last-byte", len(data) - 1)):
            _write(folder / f"damaged-truncated-{label}-{ext}.{ext}", data[:cut])
            # A missing final byte may only cut an end marker the decoder does not need.
            cases.append(Case("damaged", f"damaged-truncated-{label}-{ext}.{ext}", "any" if label == "last-byte" else "error"))
        for i in range(4):
            flipped = bytearray(data)
            for pos in rng.integers(8, len(data), size=6):
                flipped[pos] ^= 1 << int(rng.integers(0, 8))
            _write(folder / f"damaged-bitflip{i}-{ext}.{ext}", bytes(flipped))
            cases.append(Case("damaged", f"damaged-bitflip{i}-{ext}.{ext}", "any"))
        zeroed = bytearray(data)
        zeroed[len(data) // 3: 2 * len(data) // 3] = bytes(len(data) // 3 + (len(data) % 3 > 1))
        _write(folder / f"damaged-zeroed-middle-{ext}.{ext}", bytes(zeroed[: len(data)]))
        cases.append(Case("damaged", f"damaged-zeroed-middle-{ext}.{ext}", "any"))
    for ext, data in full_size.items():  # the real files themselves, cut short
        _write(folder / f"damaged-real-truncated-{ext}.{ext}", data[: len(data) * 2 // 3])
        cases.append(Case("damaged", f"damaged-real-truncated-{ext}.{ext}", "error"))
    _write(folder / "damaged-text.png", b"not an image, just text\n" * 20)
    cases.append(Case("damaged", "damaged-text.png", "error", "not an image"))
    _write(folder / "damaged-magic-only.png", b"\x89PNG\r\n\x1a\n")
    cases.append(Case("damaged", "damaged-magic-only.png", "error"))
    _write(folder / "damaged-preamble-only.dcm", bytes(128) + b"DICM")
    cases.append(Case("damaged", "damaged-preamble-only.dcm", "error"))
    return cases


def _extensions(folder: Path, seeds: Seeds) -> list[Case]:
    """Content and name disagree; DICOM without an extension."""
    grey = seeds.grey()
    files = {
        "ext-png-named-jpg.jpg": _png_bytes(grey),
        "ext-jpeg-named.png": _jpeg_bytes(grey),
        "ext-tiff-named.png": _tiff_bytes(grey),
        "ext-png-named-tif.tif": _png_bytes(grey),
        "ext-png-named-dcm.dcm": _png_bytes(grey),
        "ext-dicom-named.png": _small_dicom_bytes(seeds),
        "ext-dicom-no-extension": _small_dicom_bytes(seeds),
        "ext-bmp-named.png": _pil_bytes(Image.fromarray(grey), "BMP"),
        "ext-webp-named.jpg": _pil_bytes(Image.fromarray(grey), "WEBP", lossless=True),
    }
    for name, data in files.items():
        _write(folder / name, data)
    cases = [Case("extension", name, "ok", like_seed="dicom" not in name) for name in files]
    _write(folder / "ext-text-named.dcm", b"plain text in a .dcm file\n" * 10)
    cases.append(Case("extension", "ext-text-named.dcm", "error"))
    _write(folder / "ext-pdf-named.png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    cases.append(Case("extension", "ext-pdf-named.png", "error", "not an image"))
    return cases


def _huge(folder: Path, seeds: Seeds) -> list[Case]:
    """Headers that claim huge images, and decompression bombs (small files that decode to huge images)."""
    cases = []
    grey = seeds.grey()
    png = bytearray(_png_bytes(grey))  # patch IHDR width/height and its CRC
    for name, (w, h) in {"huge-png-header-100000x100000.png": (100000, 100000),
                         "huge-png-header-2147483647x1.png": (2**31 - 1, 1)}.items():
        png[16:24] = struct.pack(">II", w, h)
        png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
        _write(folder / name, bytes(png))
        cases.append(Case("huge", name, "error"))
    tif = _tiff_bytes(grey, compression=None)
    _write(folder / "huge-tiff-header-100000x100000.tif", _patch_tiff_size(tif, 100000, 100000))
    cases.append(Case("huge", "huge-tiff-header-100000x100000.tif", "error"))
    ds = _small_dicom(seeds)
    ds.Rows = ds.Columns = 40000
    _write_dataset(folder / "huge-dicom-header-40000x40000.dcm", ds)
    cases.append(Case("huge", "huge-dicom-header-40000x40000.dcm", "error"))
    side = 16384  # 268 megapixels of zeros: a few hundred kilobytes compressed
    _write(folder / "huge-bomb-png-16384x16384.png", _png_zeros(side, side))
    cases.append(Case("huge", "huge-bomb-png-16384x16384.png", "error", "too large"))
    tifffile.imwrite(folder / "huge-bomb-tiff-16384x16384.tif", np.zeros((side, side), np.uint8),
                     compression="zlib", tile=(1024, 1024), metadata=None)
    cases.append(Case("huge", "huge-bomb-tiff-16384x16384.tif", "error", "too large"))
    return cases


def _pixel_formats(folder: Path, seeds: Seeds) -> list[Case]:
    """Palette, 1-bit, CMYK, grey+alpha, RGBA, 16-bit RGB and other layouts, made from the real image."""
    grey = seeds.grey()
    im = Image.fromarray(grey)
    rgb = im.convert("RGB")
    files = {
        "fmt-palette-png.png": _pil_bytes(rgb.quantize(64), "PNG"),
        "fmt-palette-transparency.png": _pil_bytes(rgb.quantize(64), "PNG", transparency=0),
        "fmt-1bit-png.png": _pil_bytes(im.convert("1"), "PNG"),
        "fmt-la.png": _pil_bytes(Image.merge("LA", (im, im.point(lambda v: 255 - v))), "PNG"),
        "fmt-rgba.png": _pil_bytes(rgb.convert("RGBA"), "PNG"),
        "fmt-grey16.png": _pil_bytes(Image.fromarray(grey.astype(np.uint16) * 257), "PNG"),
        "fmt-rgb16-png.png": _png_rgb16(np.stack([grey.astype(np.uint16) * 257] * 3, axis=2)),
        "fmt-cmyk-jpg.jpg": _pil_bytes(rgb.convert("CMYK"), "JPEG"),
        "fmt-progressive.jpg": _pil_bytes(im, "JPEG", progressive=True),
        "fmt-exif-rotated.jpg": _exif_rotated_jpeg(im),
        "fmt-rgb16-tif.tif": _tiff_bytes(np.stack([grey.astype(np.uint16) * 257] * 3, axis=2), photometric="rgb"),
        "fmt-planar-rgb.tif": _tiff_bytes(np.stack([grey] * 3), photometric="rgb", planarconfig="separate"),
        "fmt-cmyk-tif.tif": _tiff_bytes(np.asarray(rgb.convert("CMYK")), photometric="separated"),
        "fmt-palette-tif.tif": _pil_bytes(rgb.quantize(64), "TIFF"),
        "fmt-miniswhite.tif": _tiff_bytes(255 - grey, photometric="miniswhite"),
        "fmt-1bit-tif.tif": _tiff_bytes(grey > 128, photometric="minisblack"),
        "fmt-grey-alpha.tif": _tiff_bytes(np.stack([grey, grey], axis=2), photometric="minisblack",
                                          extrasamples=["unassalpha"]),
        "fmt-jpeg-compressed.tif": _pil_bytes(im, "TIFF", compression="jpeg"),
        "fmt-lzw.tif": _pil_bytes(Image.fromarray(grey.astype(np.uint16) * 257), "TIFF", compression="tiff_lzw"),
        "fmt-zlib-predictor.tif": _tiff_bytes(grey.astype(np.uint16) * 257, compression="zlib", predictor=True),
        "fmt-big-endian.tif": _tiff_bytes(grey.astype(np.uint16) * 257, byteorder=">"),
        "fmt-bigtiff.tif": _tiff_bytes(grey, bigtiff=True),
    }
    for name, data in files.items():
        _write(folder / name, data)
    # a 1-bit version is dithered: read correctly, it still differs from the seed too much to compare
    cases = [Case("pixel format", name, "ok", like_seed="exif" not in name and "1bit" not in name) for name in files]
    _write(folder / "fmt-five-samples.tif", _tiff_bytes(np.stack([grey] * 5, axis=2), photometric="minisblack",
                                                        planarconfig="contig", extrasamples=["unspecified"] * 4))
    cases.append(Case("pixel format", "fmt-five-samples.tif", "error", "unsupported"))
    return cases


def _values(folder: Path, seeds: Seeds) -> list[Case]:
    """Float TIFFs with NaN, Inf and out-of-range values; integer types; constant and tiny images."""
    unit = seeds.grey().astype(np.float32) / 255
    nan, inf = unit.copy(), unit.copy()
    nan[10, 10] = np.nan
    inf[20, 20] = np.inf
    files_ok = {
        "val-float-out-of-range.tif": unit * 2e6 - 1e6,
        "val-float-extreme.tif": (unit * 2 - 1) * np.float32(3e38),
        "val-float-tiny.tif": unit * np.float32(1e-30),
        "val-float64.tif": unit.astype(np.float64),
        "val-float16.tif": unit.astype(np.float16),
        "val-int8.tif": (unit * 255 - 128).astype(np.int8),
        "val-int16-negative.tif": (unit * 4000 - 1024).astype(np.int16),
        "val-int32-negative.tif": (unit * 1e6 - 5e5).astype(np.int32),
        "val-uint32-large.tif": (unit * 4e9).astype(np.uint32),
        "val-int64.tif": (unit * 1000).astype(np.int64),
        "val-constant-uint8.tif": np.full((64, 64), 128, np.uint8),
        "val-constant-float.tif": np.full((64, 64), 0.5, np.float32),
        "val-zero-uint16.tif": np.zeros((64, 64), np.uint16),
        "val-4x4.tif": np.arange(16, dtype=np.uint8).reshape(4, 4) * 16,
        "val-4x300.tif": np.tile(np.arange(300, dtype=np.uint16), (4, 1)),
    }
    for name, array in files_ok.items():
        _write(folder / name, _tiff_bytes(array))
    cases = [Case("values", name, "ok") for name in files_ok]
    files_bad = {
        "val-float-nan.tif": (nan, "nan"),
        "val-float-inf.tif": (inf, "infinite"),
        "val-float-all-nan.tif": (np.full((32, 32), np.nan, np.float32), "nan"),
        "val-complex.tif": (unit.astype(np.complex64), "complex"),
        "val-3x3.tif": (np.zeros((3, 3), np.uint8), "minimum"),
        "val-1x500.tif": (np.zeros((1, 500), np.uint8), "minimum"),
    }
    for name, (array, reason) in files_bad.items():
        _write(folder / name, _tiff_bytes(array))
        cases.append(Case("values", name, "error", reason))
    _write(folder / "val-constant.png", _png_bytes(np.full((64, 64), 7, np.uint8)))
    cases.append(Case("values", "val-constant.png", "ok"))
    return cases


def _stacks(folder: Path, seeds: Seeds) -> list[Case]:
    """Several images in one file: upscaled one by one, or refused by name; never read as one other image."""
    grey = seeds.grey()
    pages = np.stack([grey, 255 - grey, grey // 2])
    frames = [Image.fromarray(p) for p in pages]
    _write(folder / "stack-tiff-pages.tif", _tiff_bytes(pages, photometric="minisblack"))
    _write(folder / "stack-tiff-pillow-pages.tif", _pil_bytes(frames[0], "TIFF", save_all=True,
                                                            append_images=frames[1:]))
    _write(folder / "stack-tiff-two-series.tif", _tiff_two_series(grey))
    _write(folder / "stack-apng.png", _pil_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:]))
    _write(folder / "stack-gif-named.png", _pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    ds = _small_dicom(seeds)
    stored = ds.pixel_array
    ds.NumberOfFrames = 3
    ds.PixelData = np.stack([stored, stored, stored]).tobytes()
    _write_dataset(folder / "stack-dicom-3-frames.dcm", ds)
    one = _small_dicom(seeds)
    one.NumberOfFrames = 1
    _write_dataset(folder / "stack-dicom-1-frame.dcm", one)
    return [
        Case("stack", "stack-tiff-pages.tif", "error", "stack of 3"),
        Case("stack", "stack-tiff-pillow-pages.tif", "error", "stack of 3"),
        Case("stack", "stack-tiff-two-series.tif", "error", "2 images"),
        Case("stack", "stack-apng.png", "error", "3 frames"),
        Case("stack", "stack-gif-named.png", "error", "3 frames"),
        Case("stack", "stack-dicom-3-frames.dcm", "error", "multi-frame"),
        Case("stack", "stack-dicom-1-frame.dcm", "ok"),
    ]


def _dicom(folder: Path, seeds: Seeds) -> list[Case]:
    """DICOM headers that disagree with their pixels, odd bit depths, compressed and colour files."""
    from pydicom.data import get_testdata_file
    from pydicom.pixels import pack_bits

    cases = []

    def variant(name: str, expect: str, reason: str = "", cli: str = "", **changes) -> None:
        ds = _small_dicom(seeds)
        for key, value in changes.items():
            if value is None:
                delattr(ds, key)
            else:
                setattr(ds, key, value)
        _write_dataset(folder / name, ds)
        cases.append(Case("dicom", name, expect, reason, cli=cli))

    stored = _small_dicom(seeds).pixel_array
    # A 1-bit image is read, but a 1-bit DICOM cannot hold the upscaled greys: DICOM output is refused.
    variant("dcm-bits1.dcm", "ok", cli="error", BitsAllocated=1, BitsStored=1, HighBit=0, PixelRepresentation=0,
            PixelData=pack_bits(stored > np.median(stored)))
    variant("dcm-bits8.dcm", "ok", BitsAllocated=8, BitsStored=8, HighBit=7,
            PixelData=(stored >> 7).astype(np.uint8).tobytes())
    variant("dcm-bits32.dcm", "ok", BitsAllocated=32, BitsStored=32, HighBit=31,
            PixelData=(stored.astype(np.uint32) << 16).tobytes())
    variant("dcm-signed.dcm", "ok", PixelRepresentation=1, BitsStored=16, HighBit=15,
            PixelData=(stored.astype(np.int32) - 16000).astype(np.int16).tobytes())
    variant("dcm-pixels-short.dcm", "error", PixelData=stored.tobytes()[:-100])
    variant("dcm-pixels-long.dcm", "any", PixelData=stored.tobytes() + bytes(200))
    variant("dcm-pixels-empty.dcm", "error", PixelData=b"")
    variant("dcm-no-rows.dcm", "error", "rows", Rows=None)
    variant("dcm-rows-zero.dcm", "error", Rows=0)
    variant("dcm-no-photometric.dcm", "error", "photometric", PhotometricInterpretation=None)
    variant("dcm-bits-stored-over-allocated.dcm", "error", BitsStored=24)
    variant("dcm-samples-3-monochrome.dcm", "error", SamplesPerPixel=3)
    variant("dcm-rescale-slope-zero.dcm", "any", RescaleSlope=0)
    variant("dcm-no-pixel-data.dcm", "error", "no pixel data", PixelData=None)
    # JPEG-LS decodes with pyjpegls (MIT, a test and dicom-node dependency); JPEG lossless needs the GPL
    # decoder that cxrsr never installs by default
    _write(folder / "dcm-jpeg-ls.dcm", Path(get_testdata_file("JPEGLSNearLossless_16.dcm")).read_bytes())
    cases.append(Case("dicom", "dcm-jpeg-ls.dcm", "ok"))
    for name, source, reason in (("dcm-jpeg-lossless.dcm", "JPEG-LL.dcm", "no decoder"),
                                 ("dcm-ybr-colour.dcm", "SC_ybr_full_uncompressed.dcm", "ybr"),
                                 ("dcm-rgb-colour.dcm", "SC_rgb.dcm", "rgb")):
        _write(folder / name, Path(get_testdata_file(source)).read_bytes())
        cases.append(Case("dicom", name, "error", reason))
    ds = _small_dicom(seeds)
    ds.preamble = None
    raw = io.BytesIO()
    ds.save_as(raw, enforce_file_format=False)
    _write(folder / "dcm-no-preamble.dcm", raw.getvalue())
    cases.append(Case("dicom", "dcm-no-preamble.dcm", "ok"))
    return cases


def _names(folder: Path, seeds: Seeds) -> list[Case]:
    """File names with spaces, non-UTF-8 bytes, a leading dash, 240 characters; things that are not files."""
    data = _png_bytes(seeds.grey()[:48, :48])
    names = ["name with spaces.png", "-leading-dash.png", "r\u00f6ntgen-\u80f8\u90e8.png",
             os.fsdecode(b"latin1-\xe9\xff.png"), "n" * 236 + ".png"]
    for name in names:
        _write(folder / name, data)
    cases = [Case("names", name, "ok") for name in names]
    (folder.parent / "outside").mkdir(exist_ok=True)
    _write(folder.parent / "outside" / "target.png", data)
    os.symlink(folder.parent / "outside" / "target.png", folder / "symlink-to-good.png")
    cases.append(Case("names", "symlink-to-good.png", "ok"))
    os.symlink(folder / "no-such-target.png", folder / "symlink-broken.png")
    cases.append(Case("names", "symlink-broken.png", "error", explicit=True))
    os.symlink("loop-b.png", folder / "loop-a.png")
    os.symlink("loop-a.png", folder / "loop-b.png")
    cases.append(Case("names", "loop-a.png", "error", explicit=True))
    os.mkfifo(folder / "fifo.png")
    cases.append(Case("names", "fifo.png", "error", "not a regular file", explicit=True))
    (folder / "folder-named.png").mkdir()
    cases.append(Case("names", "folder-named.png", "error", explicit=True))
    return cases


# ----------------------------------------------------------------------------------------------- writers


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def _png_bytes(array: np.ndarray) -> bytes:
    return _pil_bytes(Image.fromarray(array), "PNG")


def _jpeg_bytes(array: np.ndarray) -> bytes:
    return _pil_bytes(Image.fromarray(array), "JPEG", quality=90)


def _tiff_bytes(array: np.ndarray, **options) -> bytes:
    buf = io.BytesIO()
    options.setdefault("metadata", None)
    tifffile.imwrite(buf, array, **options)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_rgb16(array: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (Pillow cannot write one), written chunk by chunk."""
    h, w, _ = array.shape
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows, 9))
            + _png_chunk(b"IEND", b""))


def _png_zeros(w: int, h: int) -> bytes:
    """A valid 8-bit grey PNG of w x h zeros, compressed row by row (never held in memory)."""
    z = zlib.compressobj(9)
    row = bytes(w + 1)
    body = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b""))


def _patch_tiff_size(data: bytes, w: int, h: int) -> bytes:
    """Rewrite ImageWidth / ImageLength of the first page of a little-endian classic TIFF."""
    out = bytearray(data)
    ifd = struct.unpack("<I", out[4:8])[0]
    count = struct.unpack("<H", out[ifd: ifd + 2])[0]
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack("<HH", out[entry: entry + 4])
        if tag in (256, 257):
            value = w if tag == 256 else h
            out[entry + 2: entry + 4] = struct.pack("<H", 4)  # LONG
            out[entry + 8: entry + 12] = struct.pack("<I", value)
    return bytes(out)


def _tiff_two_series(grey: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        tif.write(grey, metadata=None)
        tif.write(grey[::2, ::2].copy(), metadata=None)
    return buf.getvalue()


def _exif_rotated_jpeg(image: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return _pil_bytes(image.crop((0, 0, image.width, image.height // 2)), "JPEG", exif=exif)


def _small_dicom(seeds: Seeds):
    """The real CR DICOM with all its attributes, its pixels reduced to ``seeds.size`` squared."""
    import pydicom

    ds = pydicom.dcmread(seeds.dicom)
    pixels = ds.pixel_array
    small = np.asarray(Image.fromarray(pixels.astype(np.float32)).resize((seeds.size, seeds.size), Image.BOX))
    small = np.clip(np.rint(small), 0, (1 << int(ds.BitsStored)) - 1).astype(pixels.dtype)
    ds.Rows, ds.Columns = small.shape
    ds.PixelData = small.tobytes()
    for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if keyword in ds:
            delattr(ds, keyword)
    return ds


def _small_dicom_bytes(seeds: Seeds) -> bytes:
    buf = io.BytesIO()
    _small_dicom(seeds).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _write_dataset(path: Path, ds) -> None:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    _write(path, buf.getvalue())


# ------------------------------------------------------------------------------------------------ checks


@dataclass
class Outcome:
    """What happened to one case in one harness (reader or CLI)."""

    family: str
    name: str
    expect: str
    result: str  # "ok", "error" (cxrsr's own input error), "crash" (any other exception), "hang"
    seconds: float = 0.0
    message: str = ""
    problems: list[str] = field(default_factory=list)  # broken rules; empty when the case passed


def snapshot(folder: Path) -> dict[str, str]:
    """Name -> SHA-256 of every regular file below ``folder`` (links and special files by their kind)."""
    result = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            result[str(path.relative_to(folder))] = "link:" + os.readlink(path)
        elif path.is_fifo():
            result[str(path.relative_to(folder))] = "fifo"
        elif path.is_file():
            result[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


_WORKER = r"""
import json, os, resource, signal, sys, time, traceback
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
from cxrsr.io import InputFileError, read_image
import numpy as np

class Hang(BaseException):
    # not an Exception: the readers turn any Exception into their input error, which would hide the hang
    pass

def alarm(signum, frame):
    raise Hang()

signal.signal(signal.SIGALRM, alarm)
folder = sys.argv[1]
seed = np.load(sys.argv[4]).astype(np.float64)

def likeness(a):
    # correlation of the image's grey version (colour averaged, alpha dropped) with the seed
    a = a.astype(np.float64)
    if a.ndim == 3:
        a = a[:, :, : 3 if a.shape[2] >= 3 else 1].mean(axis=2)
    if a.shape != seed.shape:
        return None
    if a.std() == 0:
        return 0.0
    return float(np.corrcoef(a.ravel(), seed.ravel())[0, 1])

for line in sys.stdin:
    name = json.loads(line)
    path = os.path.join(folder, name)
    print(json.dumps({"start": name}), flush=True)
    t = time.perf_counter()
    row = {"name": name}
    signal.setitimer(signal.ITIMER_REAL, float(sys.argv[3]))
    try:
        image = read_image(path)
        a = image.array
        row.update(result="ok", dtype=str(a.dtype), shape=list(a.shape),
                   finite=bool(np.isfinite(a).all()) if a.dtype.kind == "f" else True, likeness=likeness(a))
    except InputFileError as exc:
        row.update(result="error", message=str(exc))
    except Hang:
        row.update(result="hang", message="over the time limit")
    except BaseException as exc:
        row.update(result="crash", message=f"{type(exc).__name__}: {exc}"[:500], trace=traceback.format_exc()[-2000:])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    row["seconds"] = time.perf_counter() - t
    print(json.dumps(row), flush=True)
    if row["result"] == "hang":
        # the alarm may have struck inside a library holding a lock (logging's, say) that is now never
        # released: leave at once, and the next worker reads the remaining cases
        os._exit(0)
"""


def check_reader(folder: Path, cases: list[Case], seeds: Seeds, python: str = sys.executable) -> list[Outcome]:
    """Read every case with ``cxrsr.io.read_image`` in a worker process limited to ``READER_MEMORY`` and
    ``CASE_SECONDS`` per case; judge each result against the case's expectation."""
    seed_file = folder.parent / "seed-grey.npy"
    np.save(seed_file, seeds.grey())
    before = snapshot(folder)
    pending = list(cases)
    outcomes: list[Outcome] = []
    while pending:
        waiting = len(pending)
        proc = subprocess.Popen([python, "-c", _WORKER, str(folder), str(READER_MEMORY), str(CASE_SECONDS),
                                 str(seed_file)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                errors="surrogateescape", env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
        feed = "".join(json.dumps(c.name) + "\n" for c in pending)
        try:
            out, err = proc.communicate(feed, timeout=CASE_SECONDS * (len(pending) + 2))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        rows = {}
        started = None
        for line in out.splitlines():
            row = json.loads(line)
            if "start" in row:
                started = row["start"]
            else:
                rows[row["name"]] = row
                started = None
        for case in list(pending):
            row = rows.get(case.name)
            if row is None:
                if case.name == started:  # the worker died or hung inside this case: record it, go on after it
                    died = "hang" if proc.returncode in (None, -9) else "crash"
                    outcomes.append(_judge(case, {"result": died, "seconds": 0.0,
                                                  "message": f"worker exit {proc.returncode}: {err[-300:]}"}, folder))
                    pending.remove(case)
                break
            outcomes.append(_judge(case, row, folder))
            pending.remove(case)
        if len(pending) == waiting:  # the worker cannot even start: every remaining case is a crash
            for case in pending:
                outcomes.append(_judge(case, {"result": "crash", "message": f"worker failed: {err[-300:]}"}, folder))
            break
    after = snapshot(folder)
    for outcome in outcomes:
        if before.get(outcome.name) != after.get(outcome.name):
            outcome.problems.append("input changed")
    return outcomes


def _judge(case: Case, row: dict, folder: Path) -> Outcome:
    outcome = Outcome(case.family, case.name, case.expect, row["result"], row.get("seconds", 0.0),
                      row.get("message", ""))
    if outcome.result in ("crash", "hang"):
        outcome.problems.append(f"{outcome.result}: {outcome.message[:300]}")
        return outcome
    if case.expect != "any" and outcome.result != case.expect:
        outcome.problems.append(f"expected {case.expect}, got {outcome.result} ({outcome.message[:200]})")
    if outcome.result == "error":
        if str(folder / case.name) not in outcome.message:
            outcome.problems.append(f"error does not name the file: {outcome.message[:200]}")
        if "\n" in outcome.message:
            outcome.problems.append("error message spans several lines")
        if case.reason and case.reason not in outcome.message.lower():
            outcome.problems.append(f"error does not say {case.reason!r}: {outcome.message[:200]}")
    if outcome.result == "ok":
        if row.get("dtype") not in ("uint8", "uint16", "float32") or not row.get("finite", True):
            outcome.problems.append(f"unexpected pixels: {row.get('dtype')} finite={row.get('finite')}")
        likeness = row.get("likeness")
        if case.like_seed and (likeness is None or likeness < 0.8):
            outcome.problems.append(f"read as another image: shape {row.get('shape')}, correlation with the "
                                    f"original {likeness if likeness is None else round(likeness, 3)}")
    return outcome


def check_cli(folder: Path, cases: list[Case], outdir: Path, weights: str, python: str = sys.executable,
              extra_args: tuple[str, ...] = ()) -> tuple[list[Outcome], dict]:
    """Run ``cxrsr upscale`` once over the whole corpus folder (plus the cases a folder walk skips, by name)
    and judge every case by the CLI's rules. Returns the outcomes and a summary of the run."""
    before = snapshot(folder)
    explicit = [str(folder / c.name) for c in cases if c.explicit]
    command = ["upscale", str(folder), *explicit, "-o", str(outdir), "--weights", weights,
               "--tile", "256", *extra_args]
    start = time.perf_counter()
    status, stdout, stderr, peak_rss = run_measured(command, CLI_SECONDS + 2 * len(cases), python)
    seconds = time.perf_counter() - start
    after = snapshot(folder)
    lines = [line for line in stderr.splitlines() if line.startswith("cxrsr: error:")]
    produced = {p.name for p in outdir.rglob("*") if p.is_file()} if outdir.exists() else set()
    outcomes = []
    for case in cases:
        shown = _shown(folder / case.name)
        mine = [line for line in lines if shown in line]
        stem = Path(case.name).stem if case.name.count(".") else case.name
        outputs = [p for p in produced if p.startswith(stem + "_x4.")]
        result = "hang" if status is None else "error" if mine else "ok" if outputs else "missing"
        expect = case.cli or case.expect
        outcome = Outcome(case.family, case.name, expect, result, 0.0, mine[0] if mine else "")
        if result in ("hang", "missing"):
            outcome.problems.append("no output and no error line" if result == "missing" else "CLI over time limit")
        elif expect != "any" and result != expect:
            outcome.problems.append(f"expected {expect}, got {result} ({outcome.message[:200]})")
        if result == "ok":
            outcome.problems += _output_problems(folder / case.name, outdir / outputs[0])
        if len(mine) > 1:
            outcome.problems.append(f"{len(mine)} error lines")
        if result == "error" and outputs:
            outcome.problems.append(f"failed but left {outputs}")
        if case.reason and result == "error" and case.reason not in outcome.message.lower():
            outcome.problems.append(f"error does not say {case.reason!r}: {outcome.message[:200]}")
        if before.get(case.name) != after.get(case.name):
            outcome.problems.append("input changed")
        outcomes.append(outcome)
    partial = sorted(p for p in produced if p.endswith(".part") or p.startswith("."))
    expected_failures = sum(o.result == "error" for o in outcomes)
    summary = {"exit_status": status, "seconds": round(seconds, 1), "error_lines": len(lines),
               "outputs": len(produced), "partial_files": partial, "new_files_in_input": sorted(set(after) - set(before)),
               "traceback": "Traceback" in stderr, "peak_rss_bytes": peak_rss, "stderr_tail": stderr[-1500:], "stdout": stdout[-500:]}
    summary["problems"] = []
    if status != (1 if expected_failures else 0):
        summary["problems"].append(f"exit status {status}")
    if partial:
        summary["problems"].append(f"partial files left: {partial}")
    if summary["new_files_in_input"]:
        summary["problems"].append(f"files appeared in the input folder: {summary['new_files_in_input']}")
    if peak_rss > CLI_MEMORY:
        summary["problems"].append(f"peak memory {peak_rss / 2**30:.2f} GiB")
    if summary["traceback"]:
        summary["problems"].append("a traceback was printed")
    return outcomes, summary


# `cxrsr upscale` with its own peak resident memory printed last: VmHWM of the process after exec. (The
# rusage of a child also counts the memory of the process it was forked from, here the whole test run.)
_CLI = r"""
import sys
from cxrsr.cli import main
try:
    code = main(sys.argv[1:])
finally:
    try:
        with open("/proc/self/status") as f:
            peak = next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:")), -1)
    except OSError:
        peak = -1
    print(f"peak-rss-bytes {peak}", file=sys.stderr)
sys.exit(code)
"""


def run_measured(command: list[str], timeout: float, python: str = sys.executable) -> tuple[int | None, str, str, int]:
    """Run ``command`` (arguments of ``cxrsr``); return its exit status (None when killed at ``timeout``),
    stdout, stderr and its peak resident memory in bytes (-1 where /proc is missing)."""
    try:
        proc = subprocess.run([python, "-c", _CLI, *command], capture_output=True, timeout=timeout)
        status, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        status, out, err = None, exc.stdout or b"", exc.stderr or b""
    stderr = err.decode("utf-8", "backslashreplace")
    peaks = [int(line.split()[1]) for line in stderr.splitlines() if line.startswith("peak-rss-bytes ")]
    return status, out.decode("utf-8", "backslashreplace"), stderr, peaks[-1] if peaks else -1


def _output_problems(src: Path, dst: Path) -> list[str]:
    """An output must read back, at 4x the input's size, with finite pixels."""
    from cxrsr.io import InputFileError, read_image

    try:
        sr, lr = read_image(dst).array, read_image(src).array
    except InputFileError as exc:
        return [f"output unreadable: {exc}"]
    if sr.shape[:2] != (lr.shape[0] * 4, lr.shape[1] * 4):
        return [f"output is {sr.shape}, input {lr.shape}"]
    if sr.dtype.kind == "f" and not np.isfinite(sr).all():
        return ["output has NaN or infinite pixels"]
    return []


def _shown(path: Path) -> str:
    """How a path appears in the CLI's messages: UTF-8, undecodable name bytes as backslash escapes."""
    return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


def as_rows(outcomes: list[Outcome]) -> list[dict]:
    return [asdict(o) for o in outcomes]
