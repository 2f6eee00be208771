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


def _fake_memory(monkeypatch, tmp_path, free_kb: int, cached_kb: int, available_kb: int, cgroup: dict | None = None):
    from cxrsr.inference import tiling

    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal:       24683584 kB\nMemFree:        {free_kb} kB\n"
                       f"MemAvailable:   {available_kb} kB\nBuffers:          100000 kB\n"
                       f"Cached:         {cached_kb} kB\n")
    group = tmp_path / "cgroup"
    group.mkdir(exist_ok=True)
    for name, text in (cgroup or {}).items():
        (group / name).write_text(text)
    monkeypatch.setattr(tiling, "MEMINFO", meminfo)
    monkeypatch.setattr(tiling, "CGROUP", group)
    # the figure must come from the kernel's accounting, never from the free-pages count
    monkeypatch.setattr(tiling.os, "sysconf", lambda name: pytest.fail(f"sysconf({name}) read"))


def _forward_calls(upscaler, image) -> int:
    calls = []
    original = upscaler._forward
    upscaler._forward = lambda batch: calls.append(tuple(batch.shape)) or original(batch)
    try:
        upscaler.upscale_array(image, tile="auto")
    finally:
        del upscaler._forward
    return len(calls)


def test_a_full_page_cache_does_not_shrink_the_automatic_tile(monkeypatch, tmp_path, upscaler, lr_xray):
    # what a machine that has read a few gigabytes looks like: 3.6 GB free, 20 GB of page cache, 23 GB available
    _fake_memory(monkeypatch, tmp_path, free_kb=3_600_000, cached_kb=20_000_000, available_kb=23_000_000)
    assert auto_tile_size(torch.device("cpu"), 64, 4, torch.float32, pad=24) == 256
    assert _forward_calls(upscaler, lr_xray) == 1  # a 256x256 image in one pass, as on a fresh machine


def test_little_available_memory_still_gives_smaller_tiles(monkeypatch, tmp_path, upscaler, lr_xray):
    _fake_memory(monkeypatch, tmp_path, free_kb=1_500_000, cached_kb=100_000, available_kb=1_600_000)
    tile = auto_tile_size(torch.device("cpu"), 64, 4, torch.float32, pad=24)
    assert 64 <= tile < 256
    assert _forward_calls(upscaler, lr_xray) > 1


def test_a_cgroup_limit_caps_the_available_memory(monkeypatch, tmp_path):
    from cxrsr.inference import tiling

    two_gb = 2 << 30
    _fake_memory(monkeypatch, tmp_path, free_kb=3_600_000, cached_kb=20_000_000, available_kb=23_000_000,
                 cgroup={"memory.max": f"{two_gb}\n", "memory.current": f"{1 << 30}\n",
                         "memory.stat": f"anon 100\ninactive_file {512 << 20}\nactive_file 5\n"})
    assert tiling.available_ram() == two_gb - ((1 << 30) - (512 << 20))
    (tmp_path / "cgroup" / "memory.max").write_text("max\n")
    assert tiling.available_ram() == 23_000_000 * 1024
