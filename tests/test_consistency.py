"""Back-projection (inference/consistency.py): exact in strips, brings the output's downscale to the input,
and is what every Upscaler output goes through by default."""

import numpy as np
import pytest
from PIL import Image

from cxrsr import Upscaler
from cxrsr.data.degrade import make_lr
from cxrsr.inference import consistency
from cxrsr.inference.consistency import back_project


def _pillow(a: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(a.astype(np.float32), "F").resize((width, height), Image.BICUBIC))


def _error(sr: np.ndarray, lr: np.ndarray) -> float:
    """RMS of (the protocol's downscale of SR) - LR."""
    return float(np.sqrt(np.mean((make_lr(sr) - lr) ** 2)))


@pytest.mark.parametrize("rows", [8, 12, 40, 1024])
def test_strips_equal_the_whole_image_pass(monkeypatch, rows):
    """One step in strips of any height gives the same numbers as Pillow on the whole image."""
    monkeypatch.setattr(consistency, "STRIP_ROWS", rows)
    rng = np.random.default_rng(1)
    lr = rng.random((37, 29), dtype=np.float32)  # odd sizes: the last strip is short
    sr = rng.random((148, 116), dtype=np.float32)
    ref = np.clip(sr + _pillow(lr - np.clip(_pillow(sr, 29, 37), 0, 1), 116, 148), 0, 1)
    out = back_project(sr.copy()[None], lr[None], 4, steps=1)[0]
    assert np.array_equal(out, ref)


def test_steps_bring_the_downscale_to_the_input(lr_xray):
    """On a real X-ray: an upscale that is not consistent (Lanczos) moves towards one that is, step by step,
    and the detail above the input's band is kept (the result stays closer to Lanczos than to bicubic)."""
    lr = lr_xray[:96, :128].astype(np.float32) / 255
    lanczos = np.clip(np.asarray(Image.fromarray(lr, "F").resize((512, 384), Image.LANCZOS)), 0, 1)
    errors = [_error(back_project(lanczos.copy()[None], lr[None], 4, steps)[0], lr) for steps in (0, 1, 2, 4)]
    assert errors[0] > 1e-3
    assert errors[1] < errors[0] / 2 and errors[2] < errors[1] and errors[3] < errors[2]
    two = back_project(lanczos.copy()[None], lr[None], 4, 2)[0]
    bicubic = np.clip(_pillow(lr, 512, 384), 0, 1)
    assert np.abs(two - lanczos).mean() < np.abs(two - bicubic).mean()
    assert back_project(lanczos.copy()[None], lr[None], 4, 0)[0].tobytes() == lanczos.tobytes()


def test_bad_arguments():
    sr, lr = np.zeros((1, 32, 32), np.float32), np.zeros((1, 8, 8), np.float32)
    with pytest.raises(ValueError, match="0 or more"):
        back_project(sr, lr, 4, -1)
    with pytest.raises(ValueError, match="4x"):
        back_project(sr[:, :28], lr, 4, 1)


def test_upscaler_default_is_the_network_output_back_projected(upstream_weights, lr_xray):
    plain = Upscaler.from_pretrained(upstream_weights, device="cpu", consistency=0)
    default = Upscaler.from_pretrained(upstream_weights, device="cpu")
    assert default.consistency == consistency.DEFAULT_STEPS > 0
    unit = lr_xray[:64, :80].astype(np.float32) / 255
    net = plain.upscale(unit, tile=None)
    out = default.upscale(unit, tile=None)
    ref = back_project(net.copy()[None], unit[None], 4, consistency.DEFAULT_STEPS)[0]
    assert np.abs(out - ref).max() < 1e-6
    assert _error(out, unit) < _error(net, unit) / 2
    # tiles are back-projected as one image, after they are put together
    assert np.abs(default.upscale(unit, tile=32) - out).max() < 1e-4
    # 8-bit in, 8-bit out, still consistent
    u8 = default.upscale(lr_xray[:64, :80])
    assert u8.dtype == np.uint8 and _error(u8 / 255.0, lr_xray[:64, :80] / 255.0) < _error(net, unit)
    with pytest.raises(ValueError, match="consistency"):
        Upscaler.from_pretrained(upstream_weights, device="cpu", consistency=-1)


def test_cli_consistency_option(tmp_path, lr_xray, upstream_weights):
    from cxrsr.cli.main import main

    src = tmp_path / "in.png"
    Image.fromarray(lr_xray[:48, :48]).save(src)
    assert main(["upscale", str(src), "-o", str(tmp_path / "a"), "--weights", str(upstream_weights)]) == 0
    assert main(["upscale", str(src), "-o", str(tmp_path / "b"), "--weights", str(upstream_weights),
                 "--consistency", "0"]) == 0
    a = np.asarray(Image.open(tmp_path / "a" / "in_x4.png"), float) / 255
    b = np.asarray(Image.open(tmp_path / "b" / "in_x4.png"), float) / 255
    lr = lr_xray[:48, :48] / 255.0
    assert _error(a, lr) < _error(b, lr)
    with pytest.raises(SystemExit) as exc:
        main(["upscale", str(src), "-o", str(tmp_path / "c"), "--consistency", "-2"])
    assert exc.value.code == 2
    # the derived image says what was done to it
    assert f"{consistency.DEFAULT_STEPS} back-projection steps" in Image.open(tmp_path / "a" / "in_x4.png").text["Description"]
    assert "back-projection" not in Image.open(tmp_path / "b" / "in_x4.png").text["Description"]


def test_scoring_variants_share_one_network_pass(upstream_weights, lr_xray):
    """evaluation.upscaler_sr_by_steps: each variant equals the Upscaler run with that many steps, and the
    network runs once per image for all of them."""
    from cxrsr.evaluation import upscaler_sr_by_steps

    plain = Upscaler.from_pretrained(upstream_weights, device="cpu", tile=None, consistency=0)
    calls = []
    network = plain.upscale_array
    plain.upscale_array = lambda lr, **kw: calls.append(1) or network(lr, **kw)
    variants = upscaler_sr_by_steps(plain, (0, 2))
    lr = lr_xray[:40, :56].astype(np.float32) / 255
    for n, sr in variants.items():
        ref = Upscaler.from_pretrained(upstream_weights, device="cpu", tile=None, consistency=n)
        assert np.abs(sr(lr) - ref.upscale_array(lr, tile=None)).max() < 1e-6
    assert len(calls) == 1
    with pytest.raises(ValueError, match="consistency=0"):
        upscaler_sr_by_steps(Upscaler.from_pretrained(upstream_weights, device="cpu"), (0,))
