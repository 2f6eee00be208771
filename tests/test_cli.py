import hashlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cxrsr import __version__
from cxrsr.cli import main
from cxrsr.io import read_image
from dicom_samples import dicom_without_pixels


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def weights(upstream_weights, tmp_path_factory):
    from cxrsr.weights import convert_checkpoint

    return str(convert_checkpoint(upstream_weights, tmp_path_factory.mktemp("w") / "up.safetensors"))


@pytest.fixture
def small_png(lr_xray, tmp_path):
    p = tmp_path / "in" / "small.png"
    p.parent.mkdir()
    Image.fromarray(lr_xray[:48, :40]).save(p)
    return p


def correlation_with_bicubic(lr: np.ndarray, sr: np.ndarray) -> float:
    h, w = lr.shape
    bic = np.asarray(Image.fromarray(lr.astype(np.float32)).resize((w * 4, h * 4), Image.BICUBIC), float)
    return float(np.corrcoef(bic.ravel(), sr.astype(float).ravel())[0, 1])


def test_cli_real_png_and_jpeg(weights, nih_png, real_jpeg, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    png = src / nih_png.name
    shutil.copyfile(nih_png, png)  # the real 1024 x 1024 NIH file, byte for byte
    with Image.open(real_jpeg) as im:  # a real JPEG X-ray, cropped to keep the test quick
        im.crop((700, 700, 956, 956)).save(src / "covid_crop.jpg", quality=92)
    hashes = {p: sha(p) for p in src.iterdir()}
    out = tmp_path / "out"
    assert main(["upscale", str(src), "-o", str(out), "--weights", weights]) == 0
    assert "2 upscaled, 0 skipped, 0 failed" in capsys.readouterr().out
    sr_png = read_image(out / "00000061_012_x4.png").array
    sr_jpg = read_image(out / "covid_crop_x4.png").array
    assert sr_png.shape == (4096, 4096) and sr_png.dtype == np.uint8
    assert sr_jpg.shape == (1024, 1024) and sr_jpg.dtype == np.uint8
    assert correlation_with_bicubic(read_image(png).array, sr_png) > 0.98
    assert correlation_with_bicubic(read_image(src / "covid_crop.jpg").array, sr_jpg) > 0.98
    assert sorted(p.name for p in out.iterdir()) == ["00000061_012_x4.png", "covid_crop_x4.png"]
    assert all(sha(p) == h for p, h in hashes.items())


def test_cli_real_dicom_monochrome1(weights, rg1_dicom, tmp_path, capsys):
    before = sha(rg1_dicom)
    out = tmp_path / "out"
    assert main(["upscale", str(rg1_dicom), "-o", str(out), "--weights", weights, "--format", "tiff"]) == 0
    sr = read_image(out / "RG1_UNCR_x4.tif").array
    lr = read_image(rg1_dicom).array  # display polarity in [0, 1]
    assert sr.dtype == np.uint16 and sr.shape == (lr.shape[0] * 4, lr.shape[1] * 4)
    # MONOCHROME1 was inverted before the network and the output kept that display polarity
    assert correlation_with_bicubic(lr, sr) > 0.98
    assert len(np.unique(sr)) > 4096  # more than 12 bits of grey levels survive
    assert sha(rg1_dicom) == before


def test_bad_files_are_reported_and_the_rest_processed(weights, small_png, tmp_path, capsys):
    folder = small_png.parent
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    (folder / "trunc.png").write_bytes(small_png.read_bytes()[:50])
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(folder / "tiny.png")
    dicom_without_pixels(folder / "nopixels.dcm")
    out = tmp_path / "out"
    assert main(["upscale", str(folder), "-o", str(out), "--weights", weights]) == 1
    captured = capsys.readouterr()
    assert "1 upscaled, 0 skipped, 5 failed" in captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("cxrsr: error:")]
    assert len(errors) == 5
    for name in ("empty.png", "text.png", "trunc.png", "tiny.png", "nopixels.dcm"):
        assert any(name in line for line in errors)
    assert "Traceback" not in captured.err
    assert [p.name for p in out.iterdir()] == ["small_x4.png"]
    # --debug shows the traceback
    assert main(["upscale", str(folder / "text.png"), "-o", str(out), "--weights", weights, "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_existing_outputs_are_skipped_unless_overwrite(weights, small_png, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["upscale", str(small_png), "-o", str(out), "--weights", weights]
    assert main(args) == 0
    target = out / "small_x4.png"
    target.write_bytes(b"stale")
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "0 upscaled, 1 skipped" in captured.out
    assert target.read_bytes() == b"stale"
    assert main(args + ["--overwrite"]) == 0
    assert read_image(target).array.shape == (192, 160)


def test_output_into_the_input_folder_never_touches_inputs(weights, small_png, capsys):
    folder = small_png.parent
    before = sha(small_png)
    assert main(["upscale", str(folder), "-o", str(folder), "--weights", weights, "--suffix", "", "--overwrite"]) == 1
    assert "would overwrite an input file" in capsys.readouterr().err
    assert sha(small_png) == before
    assert main(["upscale", str(small_png), "-o", str(folder), "--weights", weights]) == 0
    assert sha(small_png) == before and (folder / "small_x4.png").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["small.png", "small_x4.png"]


def test_globs_formats_suffix_and_tile(weights, lr_xray, tmp_path, capsys):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(lr_xray[:40, :40]).save(src / "a.png")
    Image.fromarray(lr_xray[:40, :40].astype(np.uint16) * 257).save(src / "sub" / "b16.png")
    out = tmp_path / "out"
    rc = main(["upscale", str(src / "*.png"), str(src / "sub"), "-o", str(out), "--weights", weights,
               "--format", "tiff", "--suffix", "_sr", "--tile", "16"])
    assert rc == 0
    a, b = read_image(out / "a_sr.tif").array, read_image(out / "b16_sr.tif").array
    assert a.dtype == np.uint8 and b.dtype == np.uint16 and a.shape == b.shape == (160, 160)
    # recursive folders mirror their sub-folders
    assert main(["upscale", str(src), "-r", "-o", str(tmp_path / "rec"), "--weights", weights]) == 0
    assert (tmp_path / "rec" / "sub" / "b16_x4.png").exists()
    # JPEG output of a 16-bit image is 8-bit, with a warning
    assert main(["upscale", str(src / "sub" / "b16.png"), "-o", str(out), "--weights", weights, "--format", "jpeg"]) == 0
    assert "8-bit" in capsys.readouterr().err
    assert read_image(out / "b16_x4.jpg").array.dtype == np.uint8


def test_missing_inputs_and_weights(weights, small_png, tmp_path, capsys):
    assert main(["upscale", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o"), "--weights", weights]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["upscale", str(small_png), "-o", str(tmp_path / "o"), "--weights", "no-such-weights"]) == 1
    assert "unknown weights name" in capsys.readouterr().err
    assert main(["upscale", str(small_png), "-o", str(tmp_path / "o"), "--weights", weights, "--device", "cuda:7"]) == 1


def test_version_and_help():
    result = subprocess.run([sys.executable, "-m", "cxrsr", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"cxrsr {__version__}"
    result = subprocess.run([sys.executable, "-m", "cxrsr", "upscale", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "examples:" in result.stdout and "--tile" in result.stdout
    exe = shutil.which("cxrsr")
    if exe:
        assert subprocess.run([exe, "--help"], capture_output=True, text=True).returncode == 0
