"""DICOM in and out: real CR (MONOCHROME1, 15-bit) and its JPEG 2000 copies, a real CT slice, built edge cases."""

import hashlib
import logging
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut
from pydicom.uid import UID

from cxrsr.cli import main
from cxrsr.io import InputFileError, read_image
from cxrsr.io.dicom import derived_dataset, parse_window, read_dicom, stored_from_values, values_from_unit, write_dicom
from dicom_samples import dicom_with_pixels, pydicom_file

UID_ROOT_OK = __import__("re").compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dciodvfy_errors(path) -> set[str]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        import os

        if os.environ.get("CXRSR_REQUIRE_SHARED") == "1":
            pytest.fail("dciodvfy (Debian package dicom3tools) is not installed")
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    result = subprocess.run([exe, str(path)], capture_output=True, text=True)
    return {line.strip() for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")}


def nearest_x4(a):
    return np.kron(a, np.ones((4, 4), dtype=a.dtype))


def round_trip(path, tmp_path, window=None):
    """Read, 'upscale' by pixel replication (so the expected output is known exactly), write DICOM, read back."""
    unit, source = read_dicom(path, window)
    values = values_from_unit(nearest_x4(unit), source, 4)
    stored = stored_from_values(values, source.dataset)
    out = tmp_path / "out.dcm"
    write_dicom(out, derived_dataset(source, stored, 4, "test derivation", weights="test"))
    return source, out


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm", "CT_small.dcm"])
def test_pixel_round_trip_and_derived_attributes(name, tmp_path):
    path = pydicom_file(name)
    before = sha(path)
    source, out = round_trip(path, tmp_path)
    src, ds = source.dataset, pydicom.dcmread(out)
    expected = nearest_x4(src.pixel_array)
    assert np.array_equal(ds.pixel_array, expected)  # full range: the mapping is exact after rounding
    assert (ds.Rows, ds.Columns) == (src.Rows * 4, src.Columns * 4)
    assert ds.BitsStored == src.BitsStored and ds.PixelRepresentation == src.PixelRepresentation
    assert ds.PhotometricInterpretation == src.PhotometricInterpretation
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    for key in ("PatientID", "PatientName", "StudyInstanceUID", "WindowCenter", "WindowWidth",
                "RescaleSlope", "RescaleIntercept"):
        assert ds.get(key) == src.get(key), key
    for key in ("SOPInstanceUID", "SeriesInstanceUID"):
        assert ds[key].value != src[key].value and UID_ROOT_OK.match(ds[key].value) and len(ds[key].value) <= 64
        assert UID(ds[key].value).is_valid
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "test derivation" in ds.DerivationDescription
    ref = ds.SourceImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID and ref.ReferencedSOPClassUID == src.SOPClassUID
    assert ds.SeriesNumber != src.get("SeriesNumber") and "x4" in ds.SeriesDescription
    assert "not for diagnosis" in ds.SeriesDescription and len(ds.SeriesDescription) <= 64
    purpose = ref.PurposeOfReferenceCodeSequence[0]
    assert (purpose.CodeValue, purpose.CodingSchemeDesignator) == ("121322", "DCM")
    code = ds.DerivationCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == ("113085", "DCM", "Spatial resampling")
    equipment = ds.ContributingEquipmentSequence[-1]
    assert equipment.Manufacturer == "cxrsr" and any("weights test" in v for v in equipment.SoftwareVersions)
    code = equipment.PurposeOfReferenceCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == ("Newcode1", "99IHE",
                                                                             "Processing Algorithm")
    assert ds.get("BurnedInAnnotation") == src.get("BurnedInAnnotation")
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        if key in src:
            assert np.allclose([float(v) for v in ds[key].value], [float(v) / 4 for v in src[key].value], atol=1e-6)
    assert dciodvfy_errors(out) <= dciodvfy_errors(path)
    assert sha(path) == before


def test_derived_uids_are_deterministic(tmp_path):
    """The same input and weights give the same UIDs (a repeat delivery replaces, never duplicates); other
    weights give others; every instance of one source series lands in one derived series."""
    unit, source = read_dicom(pydicom_file("CT_small.dcm"))
    stored = stored_from_values(values_from_unit(nearest_x4(unit), source, 4), source.dataset)
    a = derived_dataset(source, stored, 4, "d", weights="w1")
    b = derived_dataset(source, stored, 4, "d", weights="w1")
    c = derived_dataset(source, stored, 4, "d", weights="w2")
    assert (a.SOPInstanceUID, a.SeriesInstanceUID) == (b.SOPInstanceUID, b.SeriesInstanceUID)
    assert a.SOPInstanceUID != c.SOPInstanceUID and a.SeriesInstanceUID != c.SeriesInstanceUID
    sibling = source.dataset.copy()
    sibling.SOPInstanceUID = "1.2.3.4.5"
    source.dataset = sibling
    d = derived_dataset(source, stored, 4, "d", weights="w1")
    assert d.SeriesInstanceUID == a.SeriesInstanceUID and d.SOPInstanceUID != a.SOPInstanceUID
    assert a.SOPInstanceUID == a.file_meta.MediaStorageSOPInstanceUID


def test_ct_position_moves_to_the_first_output_pixel_centre(tmp_path):
    source, out = round_trip(pydicom_file("CT_small.dcm"), tmp_path)
    src, ds = source.dataset, pydicom.dcmread(out)
    old = np.array([float(v) for v in src.ImagePositionPatient])
    new = np.array([float(v) for v in ds.ImagePositionPatient])
    spacing = float(src.PixelSpacing[0])
    assert np.allclose(old - new, [0.375 * spacing, 0.375 * spacing, 0], atol=1e-4)  # axial, identity orientation


def test_signed_monochrome2_without_spacing(tmp_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(-2000, 2000, (16, 20)).astype(np.int16)
    path = dicom_with_pixels(tmp_path / "signed.dcm", pixels, bits_stored=12 + 4, RescaleSlope=2, RescaleIntercept=-5)
    source, out = round_trip(path, tmp_path)
    ds = pydicom.dcmread(out)
    assert ds.PixelRepresentation == 1 and "PixelSpacing" not in ds and "ImagerPixelSpacing" not in ds
    assert np.array_equal(ds.pixel_array, nearest_x4(pixels))
    assert np.array_equal(apply_modality_lut(ds.pixel_array, ds), nearest_x4(pixels) * 2.0 - 5)


def test_window_keeps_values_outside_it(tmp_path):
    path = pydicom_file("CT_small.dcm")
    unit, source = read_dicom(path, "lung")
    assert source.windowed and 0.0 <= unit.min() and unit.max() == 1.0  # bone saturates the lung window
    hu = source.values.astype(np.float64)
    values = values_from_unit(nearest_x4(unit), source, 4)
    # where the bicubic upscale of the HU stays inside the window, the (here: replicated) network output is used
    bicubic = np.asarray(Image.fromarray(source.values).resize((512, 512), Image.BICUBIC), dtype=np.float64)
    near = nearest_x4(hu)
    inside = (bicubic >= -1350) & (bicubic <= 150) & (near > -1350) & (near < 150)
    assert 0.5 < inside.mean() < 1.0
    assert np.allclose(values[inside], nearest_x4(hu)[inside], atol=1e-3)  # float32 unit: far below 1 HU
    assert values.max() > 150 + 200  # bone (outside the lung window) survives
    assert values.min() >= hu.min() - 1e-3 and values.max() <= hu.max() + 1e-3
    assert parse_window("mediastinum") == (40.0, 400.0) and parse_window("40,400") == (40.0, 400.0)
    assert parse_window("full") is None
    with pytest.raises(ValueError):
        parse_window("bone-ish")


def test_multiframe_and_missing_decoder_are_refused_clearly(tmp_path):
    frames = np.zeros((3, 8, 8), np.uint16)
    with pytest.raises(InputFileError, match="multi-frame DICOM \\(3 frames\\)"):
        read_image(dicom_with_pixels(tmp_path / "multi.dcm", frames))
    # JPEG lossless needs a GPL decoder that cxrsr does not install
    path = dicom_with_pixels(tmp_path / "jpll.dcm", np.zeros((8, 8), np.uint16))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.70"
    ds.PixelData = encapsulate([b"\xff\xd8not-really-jpeg\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "jpll.dcm", enforce_file_format=True)
    with pytest.raises(InputFileError) as info:
        read_image(tmp_path / "jpll.dcm")
    message = str(info.value)
    assert "jpll.dcm" in message and "JPEG Lossless" in message and "pylibjpeg-libjpeg" in message


def test_cli_dicom_out_on_jpeg2000_copies(tiny_weights, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    inputs = [pydicom_file("RG1_J2KR.dcm"), pydicom_file("RG1_J2KI.dcm")]
    hashes = [sha(p) for p in inputs]
    assert main(["upscale", *map(str, inputs), "-o", str(out), "--weights", tiny_weights, "--debug"]) == 0
    for p, h in zip(inputs, hashes):
        result = out / f"{p.stem}_x4.dcm"
        assert sha(p) == h
        ds = pydicom.dcmread(result)
        assert (ds.Rows, ds.Columns) == (1955 * 4, 1841 * 4)
        assert dciodvfy_errors(result) <= dciodvfy_errors(p)
    # no tag value reaches the console or the log
    src = pydicom.dcmread(inputs[0])
    captured = capsys.readouterr()
    text = captured.out + captured.err + caplog.text
    for key in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "InstitutionName"):
        value = str(src.get(key, "") or "")
        if len(value) > 3:
            assert value not in text, key


def test_privacy_and_strip_metadata(tiny_weights, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    pixels = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)
    (tmp_path / "in").mkdir()
    good = dicom_with_pixels(tmp_path / "in" / "p.dcm", pixels, bits_stored=12)
    broken = tmp_path / "in" / "broken.dcm"
    raw = good.read_bytes()
    broken.write_bytes(raw[: len(raw) - 3000])  # pixel data cut short
    out = tmp_path / "out"
    rc = main(["upscale", str(tmp_path / "in"), "-o", str(out), "--weights", tiny_weights, "--format", "png", "--debug"])
    assert rc == 1
    captured = capsys.readouterr()
    text = captured.out + captured.err + caplog.text
    assert "broken.dcm" in captured.err
    for secret in ("Test^Synthetic", "SYNTH-0001", "Synthetic"):
        assert secret not in text
    with Image.open(out / "p_x4.png") as im:
        assert im.mode == "I;16" and "cxrsr" in im.text.get("Software", "")
        assert not any("SYNTH" in v or "Synthetic" in v for v in im.text.values())
    assert main(["upscale", str(good), "-o", str(out), "--weights", tiny_weights, "--format", "png",
                 "--strip-metadata", "--overwrite"]) == 0
    with Image.open(out / "p_x4.png") as im:
        assert im.text == {}
    assert main(["upscale", str(good), "-o", str(out), "--weights", tiny_weights, "--format", "tiff",
                 "--strip-metadata"]) == 0
    import tifffile

    with tifffile.TiffFile(out / "p_x4.tif") as tif:
        tags = {t.name for t in tif.pages[0].tags}
        assert "Software" not in tags and "ImageDescription" not in tags


def test_16bit_outputs_keep_the_full_range(tiny_weights, tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "r.png")
    for fmt, ext in (("png", "png"), ("tiff", "tif")):
        assert main(["upscale", str(tmp_path / "r.png"), "-o", str(tmp_path / fmt), "--weights", tiny_weights,
                     "--format", fmt]) == 0
        out = read_image(tmp_path / fmt / f"r_x4.{ext}").array
        assert out.dtype == np.uint16 and out.min() >= 0 and out.max() <= 65535
        assert len(np.unique(out)) > 256


def test_dicom_output_needs_dicom_input(tiny_weights, tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--weights", tiny_weights,
                 "--format", "dcm"]) == 1
    assert "DICOM output needs a DICOM input" in capsys.readouterr().err
