"""Shared fixtures. Real data comes from ../shared beside the checkout (or $CXRSR_SHARED); on a machine
without it those tests are skipped, unless CXRSR_REQUIRE_SHARED=1 (set by CI) turns that into a failure."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CXRSR_SHARED", ROOT.parent / "shared"))
UPSTREAM = SHARED / "weights" / "swift_srgan_4x.pth.tar"
CXR = SHARED / "data" / "cxr"


def require(path: Path) -> Path:
    if not path.exists():
        message = f"{path} is missing (shared data beside the checkout)"
        if os.environ.get("CXRSR_REQUIRE_SHARED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def upstream_weights() -> Path:
    return require(UPSTREAM)


@pytest.fixture(scope="session")
def nih_png() -> Path:
    return require(CXR / "nih" / "test" / "00000061_012.png")


@pytest.fixture(scope="session")
def real_jpeg() -> Path:
    return require(CXR / "covid_adult" / "test" / "0a7faa2a.jpg")


@pytest.fixture(scope="session")
def lr_xray(nih_png) -> np.ndarray:
    """A real chest X-ray at 256 x 256, uint8: the network's usual input size (Pillow bicubic /4)."""
    with Image.open(nih_png) as im:
        return np.asarray(im.convert("L").resize((256, 256), Image.BICUBIC))


@pytest.fixture(scope="session")
def upscaler(upstream_weights):
    from cxrsr import Upscaler

    return Upscaler.from_pretrained(upstream_weights, device="cpu")


@pytest.fixture(scope="session")
def rg1_dicom() -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCR.dcm")
    assert path is not None, "pydicom-data is not installed"
    return Path(path)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> str:
    """A small randomly initialised generator (8 channels, 1 block): the full file pipeline at a fraction of
    the real model's cost, for tests about I/O rather than image quality."""
    import torch

    from cxrsr.models import Generator, GeneratorConfig
    from cxrsr.weights import save_generator

    torch.manual_seed(0)
    model = Generator(GeneratorConfig(channels=8, blocks=1)).eval()
    return str(save_generator(model, tmp_path_factory.mktemp("tiny") / "tiny.safetensors"))



@pytest.fixture(scope="session")
def nih_train_list(tmp_path_factory):
    """A list file of 12 nih/train images, for short training runs."""
    folder = require(CXR / "nih" / "train")
    files = sorted(folder.glob("*.png"))[:12]
    path = tmp_path_factory.mktemp("lists") / "train.txt"
    path.write_text("\n".join(str(p) for p in files) + "\n")
    return path
