import hashlib

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image

from cxrsr.io import InputFileError, read_image, write_image
from cxrsr.io.raster import MAX_TIFF_PAGES
from dicom_samples import dicom_without_pixels


def _bad_files(tmp_path, nih_png):
    good = nih_png.read_bytes()
    files = {
        "empty.png": (b"", "empty file"),
        "truncated.png": (good[: len(good) // 3], "corrupt or truncated"),
        "notes.png": (b"this is a text file, not an image\n" * 10, "not an image"),
        "tiny.png": (None, "minimum is 4x4"),
        "truncated.tif": (None, "TIFF"),
    }
    out = {}
    for name, (data, reason) in files.items():
        p = tmp_path / name
        if name == "tiny.png":
            Image.fromarray(np.zeros((3, 5), np.uint8)).save(p)
        elif name == "truncated.tif":
            tifffile.imwrite(p, np.zeros((64, 64), np.uint16))
            p.write_bytes(p.read_bytes()[:60])
        else:
            p.write_bytes(data)
        out[p] = reason
    out[dicom_without_pixels(tmp_path / "nopixels.dcm")] = "no pixel data"
    bad_dcm = tmp_path / "garbage.dcm"
    bad_dcm.write_bytes(b"\x00" * 128 + b"DICM" + b"\x01\x02" * 10)
    out[bad_dcm] = "DICOM"
    return out


def test_bad_inputs_raise_one_line_errors_naming_the_file(tmp_path, nih_png):
    for path, reason in _bad_files(tmp_path, nih_png).items():
        with pytest.raises(InputFileError) as info:
            read_image(path)
        message = str(info.value)
        assert str(path) in message and reason.lower() in message.lower(), message
        assert "\n" not in message


def test_multi_page_tiff_is_refused_and_planar_rgb_is_colour(tmp_path):
    """A stack of grey pages is never read as one colour image (pages taken as channels); real planar and
    interleaved RGB still are colour, the same pixels either way."""
    pages = np.stack([np.full((64, 64), v, np.uint8) for v in (10, 120, 240)])
    for name, writer in (("tifffile-pages.tif", lambda p: tifffile.imwrite(p, pages, photometric="minisblack")),
                         ("pillow-pages.tif", lambda p: Image.fromarray(pages[0]).save(
                             p, save_all=True, append_images=[Image.fromarray(x) for x in pages[1:]]))):
        path = tmp_path / name
        writer(path)
        with pytest.raises(InputFileError, match="stack of 3 images"):
            read_image(path)
    tifffile.imwrite(tmp_path / "planar.tif", pages, photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "contig.tif", np.moveaxis(pages, 0, -1), photometric="rgb")
    planar, contig = read_image(tmp_path / "planar.tif").array, read_image(tmp_path / "contig.tif").array
    assert planar.shape == (64, 64, 3) and np.array_equal(planar, contig)
    tifffile.imwrite(tmp_path / "one-page.tif", pages[:1], photometric="minisblack")
    assert read_image(tmp_path / "one-page.tif").array.shape == (64, 64)


def test_tiff_with_more_pages_than_the_limit_is_refused(tmp_path):
    path = tmp_path / "many.tif"
    tifffile.imwrite(path, np.zeros((MAX_TIFF_PAGES + 1, 4, 4), np.uint8), photometric="minisblack", metadata=None)
    with pytest.raises(InputFileError, match=f"{MAX_TIFF_PAGES + 1} pages"):
        read_image(path)


def test_16bit_png_and_tiff_round_trip(tmp_path):
    a = (np.random.default_rng(1).integers(0, 65536, (40, 30))).astype(np.uint16)
    for name in ("a.png", "a.tif"):
        write_image(a, tmp_path / name)
        back = read_image(tmp_path / name).array
        assert back.dtype == np.uint16 and np.array_equal(back, a)


def test_8bit_rgba_and_grey_jpeg(tmp_path, real_jpeg):
    img = read_image(real_jpeg)
    assert img.format == "jpeg" and img.array.dtype == np.uint8 and img.array.ndim == 2
    rgba = np.dstack([np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 128, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png").array.shape == (8, 8, 4)


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    write_image(np.zeros((8, 8), np.uint8), tmp_path / "x.png")
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]
    with pytest.raises(ValueError):
        write_image(np.zeros((8, 8), np.float32), tmp_path / "y.png")  # PNG cannot hold float
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_dicom_monochrome1_is_shown_as_bone_bright(rg1_dicom, tmp_path):
    ds = pydicom.dcmread(rg1_dicom)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.BitsStored == 15
    stored = ds.pixel_array.astype(np.float64)
    img = read_image(rg1_dicom)
    assert img.format == "dicom" and img.array.dtype == np.float32
    expected = 1 - (stored - stored.min()) / (stored.max() - stored.min())
    assert np.abs(img.array - expected).max() < 1e-6
    # the same pixels stored inverted as MONOCHROME2 read back identically
    inv = (stored.max() + stored.min() - stored).astype(np.uint16)
    ds.PixelData = inv.tobytes()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.save_as(tmp_path / "mono2.dcm")
    assert np.abs(read_image(tmp_path / "mono2.dcm").array - img.array).max() < 1e-6


def test_reading_never_modifies_the_input(rg1_dicom, nih_png):
    for path in (rg1_dicom, nih_png):
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        read_image(path)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before
