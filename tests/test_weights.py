import pickle
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open

from cxrsr.cli import main
from cxrsr.models import Generator, GeneratorConfig
from cxrsr.weights import WeightsError, convert_checkpoint, load_generator, resolve_weights, save_generator


def _as_batch(lr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(lr.astype(np.float32) / 255)[None, None].expand(1, 3, *lr.shape).contiguous()


def test_convert_writes_safetensors_with_metadata(upstream_weights, tmp_path):
    out = convert_checkpoint(upstream_weights, tmp_path / "up.safetensors")
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["scale"] == "4" and meta["channels"] == "64" and meta["in_channels"] == "3"
    assert meta["source"] == upstream_weights.name
    model, meta2 = load_generator(out)
    ref, _ = load_generator(upstream_weights)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_cli_convert(upstream_weights, tmp_path):
    out = tmp_path / "w.safetensors"
    assert main(["convert", str(upstream_weights), str(out), "--source", "upstream v0.1"]) == 0
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["source"] == "upstream v0.1"
    assert main(["convert", str(upstream_weights), str(out)]) == 1  # exists, no --overwrite


def test_spandrel_loads_cxrsr_weights_and_agrees(upstream_weights, lr_xray, tmp_path):
    spandrel = pytest.importorskip("spandrel")
    model, _ = load_generator(upstream_weights)
    path = save_generator(model, tmp_path / "cxrsr.safetensors")
    desc = spandrel.ModelLoader().load_from_file(str(path))
    assert desc.architecture.id == "SwiftSRGAN" and desc.scale == 4
    x = _as_batch(lr_xray)
    with torch.no_grad():
        ours = model(x)
        theirs = desc.model.eval()(x)
    assert (ours - theirs).abs().max().item() < 1e-5


def test_upstream_checkpoint_output_equals_spandrel(upstream_weights, lr_xray, tmp_path):
    spandrel = pytest.importorskip("spandrel")
    same_file = tmp_path / "swift_srgan_4x.pth"  # spandrel reads .pth, not .pth.tar: same bytes, new name
    shutil.copyfile(upstream_weights, same_file)
    desc = spandrel.ModelLoader().load_from_file(str(same_file))
    model, _ = load_generator(upstream_weights)
    x = _as_batch(lr_xray)
    with torch.no_grad():
        assert (model(x) - desc.model.eval()(x)).abs().max().item() < 1e-5


def test_other_scales_round_trip_through_spandrel(tmp_path):
    spandrel = pytest.importorskip("spandrel")
    torch.manual_seed(0)
    model = Generator(GeneratorConfig(scale=2, channels=16, blocks=3)).eval()
    desc = spandrel.ModelLoader().load_from_file(str(save_generator(model, tmp_path / "x2.safetensors")))
    assert desc.scale == 2
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert (model(x) - desc.model.eval()(x)).abs().max().item() < 1e-5


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_pickles_with_code_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": _Evil()}, f)
    with pytest.raises(WeightsError, match="cannot read weights"):
        load_generator(path)


def test_non_generator_weights_are_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(WeightsError, match="not a Swift-SRGAN generator"):
        load_generator(path)


def test_unknown_name_and_missing_file():
    with pytest.raises(WeightsError, match="unknown weights name"):
        resolve_weights("no-such-model")
    with pytest.raises(WeightsError, match="not found"):
        resolve_weights("missing/file.safetensors")
