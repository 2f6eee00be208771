"""The chest X-ray weights that ship inside the package: found by name, the default everywhere, complete in the
wheel, loadable by spandrel, carrying their training compute, and better than bicubic on real X-rays."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CXR, require
from PIL import Image

from cxrsr import Upscaler
from cxrsr.cli import main
from cxrsr.evaluation import BASELINES, evaluate, summarise, upscaler_sr
from cxrsr.weights import DEFAULT_WEIGHTS, available_weights, load_generator, resolve_weights

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["cxr-fidelity", "cxr-gan"]


def test_both_models_ship_and_fidelity_is_the_default():
    assert DEFAULT_WEIGHTS == "cxr-fidelity"
    assert set(SHIPPED) <= set(available_weights())
    path = resolve_weights(None)
    assert path.name == "cxr-fidelity.safetensors" and path.parent.name == "files" and path.is_file()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_record_their_recipe_and_compute(name):
    model, meta = load_generator(resolve_weights(name))
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    stretches = json.loads(meta["training_stretches"])
    assert stretches and int(meta["total_steps"]) == sum(s["steps"] for s in stretches) > 0
    assert int(meta["total_samples"]) > 0 and float(meta["total_cpu_hours"]) > 0
    assert float(meta["val_psnr"]) > 39.17  # above bicubic's 39.17 dB on nih/val, where it was selected
    recipe = json.loads(meta["recipe"])
    if name == "cxr-gan":
        assert recipe["loss"]["adversarial_weight"] > 0 and recipe["run"]["steps_gan"] > 0
    else:
        assert recipe["loss"]["adversarial_weight"] == 0 or recipe["run"]["steps_gan"] == 0


@pytest.mark.parametrize("name", SHIPPED)
def test_spandrel_loads_the_shipped_weights(name, tmp_path):
    spandrel = pytest.importorskip("spandrel")
    desc = spandrel.ModelLoader().load_from_file(str(resolve_weights(name)))
    assert desc.architecture.id == "SwiftSRGAN" and desc.scale == 4
    model, _ = load_generator(resolve_weights(name))
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert (model(x) - desc.model.eval()(x)).abs().max().item() < 1e-5


def test_cli_upscales_with_no_weights_option(tmp_path, capsys):
    src = tmp_path / "chest.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).save(src)
    assert main(["upscale", str(src), "-o", str(tmp_path / "out")]) == 0
    with Image.open(tmp_path / "out" / "chest_x4.png") as im:
        assert im.size == (192, 160) and im.mode == "L"
        assert "cxr-fidelity" in json.dumps(dict(im.info))
    assert Upscaler.from_pretrained().weights_name == "cxr-fidelity"


def test_shipped_models_beat_bicubic_on_real_xrays(tmp_path):
    """Five NIH test images and five from each other hospital: both models above bicubic in PSNR on each set,
    and cxr-fidelity in SSIM too."""
    folders = []
    for rel in ("nih/test", "covid_adult/test", "kermany_pediatric/test"):
        files = sorted(require(CXR / rel).iterdir())[:5]
        folder = tmp_path / rel.replace("/", "_")  # evaluate() takes folders: five images linked into one each
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            link = folder / f.name
            if not link.exists():
                link.symlink_to(f)
        folders.append(str(folder))
    models = {"bicubic": BASELINES["bicubic"]}
    for name in SHIPPED:
        models[name] = upscaler_sr(Upscaler.from_pretrained(name, device="cpu", tile=None))
    summary = summarise(evaluate(folders, models))
    for folder, rows in summary.items():
        for name in SHIPPED:
            assert rows[name]["psnr"] > rows["bicubic"]["psnr"], (folder, name, rows)
        assert rows["cxr-fidelity"]["ssim"] > rows["bicubic"]["ssim"], (folder, rows)


def test_the_wheel_carries_the_weights(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next(tmp_path.glob("cxrsr-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for name in SHIPPED:
            member = f"cxrsr/weights/files/{name}.safetensors"
            assert member in names
            assert z.read(member) == resolve_weights(name).read_bytes()
