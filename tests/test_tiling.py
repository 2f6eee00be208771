import numpy as np
import pytest
import torch

from cxrsr.inference import auto_tile_size, tile_starts


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 8), (64, 64, 8), (65, 64, 16), (1000, 96, 16), (10, 32, 8)])
def test_tile_starts_cover_the_axis_with_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + min(tile, length)] = True
        assert 0 <= s and s + min(tile, length) <= length
    assert covered.all()
    for a, b in zip(starts, starts[1:]):
        assert a + tile - b >= overlap


def test_tiled_equals_untiled_on_a_real_xray(upscaler, lr_xray):
    full = upscaler.upscale_array(lr_xray.astype(np.float32) / 255, tile=None)
    # 256 x 200 (non-square) in 96-pixel tiles: a 3 x 3 grid with uneven last tiles
    crop = lr_xray[:, :200].astype(np.float32) / 255
    full_crop = upscaler.upscale_array(crop, tile=None)
    tiled = upscaler.upscale_array(crop, tile=96)
    assert tiled.shape == full_crop.shape == (1024, 800)
    assert np.abs(tiled - full_crop).max() < 1e-3
    assert full.shape == (1024, 1024)


def test_tiled_uint8_differs_by_at_most_one_level(upscaler, lr_xray):
    a = lr_xray[:128, :160]
    full = upscaler.upscale_array(a, tile=None).astype(int)
    tiled = upscaler.upscale_array(a, tile=64).astype(int)
    assert np.abs(full - tiled).max() <= 1


def test_auto_tile_size_is_bounded():
    size = auto_tile_size(torch.device("cpu"), 64, 4, torch.float32, pad=24)
    assert 64 <= size <= 2048 and size % 32 == 0
