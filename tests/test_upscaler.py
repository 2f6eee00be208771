import numpy as np
import pytest
from PIL import Image

from cxrsr import Upscaler
from cxrsr.io import InputFileError


@pytest.fixture(scope="module")
def small(lr_xray):
    return lr_xray[64:128, 64:128]  # 64 x 64 of a real X-ray, uint8


def test_uint8_grey(upscaler, small):
    out = upscaler.upscale(small)
    assert out.dtype == np.uint8 and out.shape == (256, 256)
    # the result must look like the input: strongly correlated with a bicubic upscale
    bic = np.asarray(Image.fromarray(small).resize((256, 256), Image.BICUBIC), float)
    assert np.corrcoef(bic.ravel(), out.astype(float).ravel())[0, 1] > 0.98


def test_uint16_keeps_dtype_and_value_range(upscaler, small):
    twelve_bit = (small.astype(np.uint16) * 16 + 100)  # a 12-bit image stored in uint16
    out = upscaler.upscale(twelve_bit)
    assert out.dtype == np.uint16 and out.shape == (256, 256)
    assert out.min() >= twelve_bit.min() and out.max() <= twelve_bit.max()
    # the network sees the image's own range mapped to [0, 1]: the same as the min-max normalised float image
    lo, hi = float(twelve_bit.min()), float(twelve_bit.max())
    ref = upscaler.upscale(((twelve_bit - lo) / (hi - lo)).astype(np.float32))
    assert np.abs((out.astype(float) - lo) / (hi - lo) - ref).max() <= 0.5 / (hi - lo) + 1e-6
    # and the output uses the finer steps of 16 bits, not just the input's levels
    assert len(np.unique(out)) > 2 * len(np.unique(twelve_bit))


def test_float_in_unit_range_and_outside(upscaler, small):
    unit = small.astype(np.float32) / 255
    out = upscaler.upscale(unit)
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    hu = unit.astype(np.float64) * 2000 - 1000  # e.g. Hounsfield units
    out_hu = upscaler.upscale(hu)
    assert out_hu.dtype == np.float64
    # values outside [0, 1] are mapped by their own range and mapped back
    norm = ((hu - hu.min()) / (hu.max() - hu.min())).astype(np.float32)
    assert np.allclose((out_hu - hu.min()) / (hu.max() - hu.min()), upscaler.upscale(norm), atol=1e-5)
    assert out_hu.min() >= hu.min() and out_hu.max() <= hu.max()


def test_rgb_with_grey_content_matches_grey(upscaler, small):
    rgb = np.repeat(small[:, :, None], 3, axis=2)
    out = upscaler.upscale(rgb)
    assert out.shape == (256, 256, 3)
    assert np.array_equal(out[:, :, 0], upscaler.upscale(small))
    assert np.array_equal(out[:, :, 0], out[:, :, 2])


def test_colour_rgb_stays_colour(upscaler, small):
    rgb = np.stack([small, 255 - small, small // 2], axis=2)
    out = upscaler.upscale(rgb)
    assert out.shape == (256, 256, 3)
    assert not np.array_equal(out[:, :, 0], out[:, :, 1])


def test_rgba_keeps_alpha(upscaler, small):
    alpha = np.full_like(small, 255)
    alpha[:, :32] = 0
    out = upscaler.upscale(np.dstack([small, small, small, alpha]))
    assert out.shape == (256, 256, 4)
    assert out[:, :120, 3].max() == 0 and out[:, 136:, 3].min() == 255


def test_pil_in_pil_out(upscaler, small):
    for image in (Image.fromarray(small), Image.fromarray(small.astype(np.uint16) * 200),
                  Image.fromarray(np.dstack([small] * 3))):
        out = upscaler.upscale(image)
        assert isinstance(out, Image.Image) and out.size == (256, 256) and out.mode == image.mode


def test_path_in_array_out(upscaler, small, tmp_path):
    p = tmp_path / "x.png"
    Image.fromarray(small).save(p)
    out = upscaler.upscale(p)
    assert np.array_equal(out, upscaler.upscale(small))


def test_too_small_and_bad_types(upscaler):
    with pytest.raises(InputFileError, match="minimum is 4x4"):
        upscaler.upscale(np.zeros((3, 8), np.uint8))
    with pytest.raises(InputFileError, match="NaN"):
        upscaler.upscale(np.full((8, 8), np.nan, np.float32))
    with pytest.raises(TypeError):
        upscaler.upscale([[1, 2], [3, 4]])


def test_constant_image(upscaler):
    out = upscaler.upscale(np.full((8, 8), 1234, np.uint16))
    assert out.shape == (32, 32) and (out == 1234).all()


def test_from_pretrained_options(upstream_weights):
    u = Upscaler.from_pretrained(upstream_weights, device="cpu", precision="bf16", tile=64)
    assert u.scale == 4 and u.tile == 64
    out = u.upscale(np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8))
    assert out.shape == (64, 64)
    with pytest.raises(ValueError, match="precision"):
        Upscaler.from_pretrained(upstream_weights, device="cpu", precision="fp8")
    with pytest.raises(ValueError, match="device"):
        Upscaler.from_pretrained(upstream_weights, device="tpu")


def test_upscaler_computes_the_reference_function(upstream_weights, lr_xray):
    """The Upscaler's CPU path (channels-last layout, grey replication and averaging), without the
    back-projection that follows it (tests/test_consistency.py), equals a plain fp32 forward pass of the
    generator as loaded from the checkpoint."""
    import torch

    from cxrsr.weights import load_generator

    model, _ = load_generator(upstream_weights)
    unit = lr_xray[:96, :80].astype(np.float32) / 255
    with torch.no_grad():
        ref = model(torch.from_numpy(unit)[None, None].expand(1, 3, 96, 80)).mean(1)[0].numpy()
    out = Upscaler.from_pretrained(upstream_weights, device="cpu", consistency=0).upscale(unit, tile=None)
    assert np.abs(out - ref).max() < 1e-5
