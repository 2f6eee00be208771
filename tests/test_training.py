"""Training and evaluation on the CPU: short real runs on chest X-rays from ../shared."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxrsr.cli import main
from cxrsr.data import AugmentConfig, PatchDataset, StepSampler, make_lr, split_by_patient
from cxrsr.data.degrade import bicubic_upscale
from cxrsr.evaluation import psnr, ssim
from cxrsr.io import InputFileError
from cxrsr.training import export_generator, load_config, train
from cxrsr.weights import load_generator

from conftest import CXR, require

ROOT = Path(__file__).resolve().parents[1]


def small_config(out, train_list, upstream, **extra):
    overrides = [
        f'run.out="{out}"', f'data.train="{train_list}"', f'data.val="{CXR / "nih" / "val"}"',
        "data.val_max_images=1", "data.hr_size=64", "data.workers=0", "optim.batch_size=4",
        "loss.perceptual_weight=0", "run.val_every=1000", "run.ckpt_every=1000", "run.log_every=1",
        f'run.init="{upstream}"', 'run.device="cpu"',
    ] + [f"{k}={v}" for k, v in extra.items()]
    return load_config(None, overrides)


def test_split_is_patient_disjoint_and_deterministic():
    files = sorted(require(CXR / "nih" / "train").glob("*.png"))
    a = split_by_patient(files, (0.8, 0.1, 0.1), seed=1)
    b = split_by_patient(list(reversed(files)), (0.8, 0.1, 0.1), seed=1)
    assert a == b and sum(len(v) for v in a.values()) == len(files)
    patients = {k: {p.name.split("_")[0] for p in v} for k, v in a.items()}
    assert not (patients["train"] & patients["val"]) and not (patients["train"] & patients["test"])
    assert not (patients["val"] & patients["test"])
    assert all(len(v) > 0 for v in a.values())


def test_augmented_pairs_stay_aligned():
    files = sorted(require(CXR / "nih" / "train").glob("*.png"))[:3]
    aug = AugmentConfig(rotate_p=1.0, clahe_p=1.0, hflip_p=0.5, vflip_p=0.5)
    ds = PatchDataset(files, hr_size=128, augment=aug)
    sampler = iter(StepSampler(len(ds), 4, seed=3))
    for _ in range(6):
        lr, hr = ds[next(sampler)]
        lr, hr = lr[0].numpy().astype(np.float64), hr[0].numpy().astype(np.float64)
        assert lr.shape == (32, 32) and hr.shape == (128, 128)
        assert np.allclose(lr, make_lr(hr), atol=1e-6)  # LR is the protocol degradation of this very HR
        up = bicubic_upscale(lr)
        errors = {(dy, dx): np.mean((np.roll(up, (dy, dx), (0, 1)) - hr)[8:-8, 8:-8] ** 2)
                  for dy in (-2, 0, 2) for dx in (-2, 0, 2)}
        assert min(errors, key=errors.get) == (0, 0)


def test_image_cache_stays_within_its_budget_and_changes_no_sample(monkeypatch, tmp_path):
    files = sorted(require(CXR / "nih" / "train").glob("*.png"))[:5]
    one = 1024 * 1024 * 4  # a decoded 1024x1024 image, float32
    capped = PatchDataset(files, hr_size=64, augment=AugmentConfig(), cache_gb=2.5 * one / 2**30)
    uncached = PatchDataset(files, hr_size=64, augment=AugmentConfig(), cache=False)
    items = [(i % 5, 1000 + i) for i in range(15)]  # every file three times
    for item in items:
        for a, b in zip(capped[item], uncached[item]):
            assert torch.equal(a, b)
    assert len(capped.cache) == 2 and capped.cache_bytes <= capped.cache_budget()
    assert uncached.cache is None
    with pytest.raises(ValueError, match="cache_gb"):
        PatchDataset(files, cache_gb=-1)
    # preloading (before loader workers start) fills the same budget in file order, skipping bad files
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    preloaded = PatchDataset([broken] + files, hr_size=64, augment=AugmentConfig(), cache_gb=2.5 * one / 2**30)
    assert preloaded.preload(threads=2) == 2 and sorted(preloaded.cache) == [1, 2] and preloaded.bad == {0}
    for index, seed in items:
        for a, b in zip(preloaded[(index + 1, seed)], uncached[(index, seed)]):
            assert torch.equal(a, b)
    assert sorted(preloaded.cache) == [1, 2]  # nothing added once the budget is full
    assert PatchDataset(files, cache=False).preload() == 0
    # in a loader worker, each of the workers' copies of the dataset gets its share of the budget
    import cxrsr.data.dataset as dataset_module

    monkeypatch.setattr(dataset_module, "get_worker_info", lambda: type("Info", (), {"num_workers": 2})())
    assert capped.cache_budget() == capped.cache_bytes_total // 2


def test_a_bad_training_file_is_reported_and_the_next_one_stands_in(tmp_path, caplog):
    good = sorted(require(CXR / "nih" / "train").glob("*.png"))[:2]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(small)
    ds = PatchDataset([broken, good[0], small, good[1]], hr_size=64, augment=AugmentConfig())
    clean = PatchDataset(good, hr_size=64, augment=AugmentConfig())
    with caplog.at_level("WARNING"):
        for index, stand_in in [(0, 0), (2, 1), (1, 0), (3, 1)]:
            for a, b in zip(ds[(index, 77)], clean[(stand_in, 77)]):
                assert torch.equal(a, b)
    assert "broken.png" in caplog.text and "small.png: image 40x40 is smaller than the 64x64" in caplog.text
    assert ds.bad == {0, 2}
    with pytest.raises(InputFileError, match="no training image could be used"):
        PatchDataset([broken, small], hr_size=64)[(0, 1)]


def test_scale_and_intensity_augmentations():
    """Off by default (the paper's stream of samples is unchanged); on, they keep patches in [0, 1] at the patch
    size, inversion is exactly 1 - patch, and the scale augmentation makes a patch cover more of the image."""
    from cxrsr.data.augment import random_patch

    image = np.asarray(Image.open(sorted(require(CXR / "nih" / "train").glob("*.png"))[0]).convert("L"),
                       dtype=np.float32) / 255
    plain = AugmentConfig(rotate_p=0, clahe_p=0, hflip_p=0, vflip_p=0)
    base = random_patch(image, 128, np.random.default_rng(5), AugmentConfig())
    assert np.array_equal(base, random_patch(image, 128, np.random.default_rng(5), AugmentConfig(scale_p=0.0)))
    flipped = random_patch(image, 128, np.random.default_rng(7), AugmentConfig(**{**vars(plain), "invert_p": 1.0}))
    assert np.allclose(flipped, 1 - random_patch(image, 128, np.random.default_rng(7), plain))
    every = AugmentConfig(scale_p=1, gamma_p=1, contrast_p=1, brightness_p=1, invert_p=0.5)
    for seed in range(8):
        patch = random_patch(image, 128, np.random.default_rng(seed), every)
        assert patch.shape == (128, 128) and patch.dtype == np.float32 and 0 <= patch.min() <= patch.max() <= 1

    # a ramp along x: a patch of the downscaled image spans a wider range of the ramp than a plain crop
    ramp = np.tile(np.linspace(0, 1, 1024, dtype=np.float32), (1024, 1))
    scaled = AugmentConfig(**{**vars(plain), "scale_p": 1.0, "scale_min": 0.5})
    plain_span = np.ptp(random_patch(ramp, 128, np.random.default_rng(1), plain)[64])
    spans = [np.ptp(random_patch(ramp, 128, np.random.default_rng(seed), scaled)[64]) / plain_span
             for seed in range(8)]
    assert min(spans) > 0.99 and max(spans) > 1.5 and max(spans) < 2.05  # factors drawn from [0.5, 1]


def test_metrics_and_protocol_lr_match_references():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    hr = rng.random((64, 64))
    sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1)
    base = hr * 0.9
    assert psnr(base + 0.01, base, border=0) == pytest.approx(40.0, abs=1e-6)  # 10 log10(1 / 1e-4)
    assert psnr(sr, hr) == pytest.approx(peak_signal_noise_ratio(hr[4:-4, 4:-4], sr[4:-4, 4:-4], data_range=1.0))
    assert ssim(sr, hr) == pytest.approx(structural_similarity(
        hr[4:-4, 4:-4], sr[4:-4, 4:-4], data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False))
    pil = np.asarray(Image.fromarray(hr.astype(np.float32), "F").resize((16, 16), Image.BICUBIC), np.float64)
    assert np.array_equal(make_lr(hr), np.clip(pil, 0, 1))


def test_few_steps_lower_the_loss(nih_train_list, upstream_weights, tmp_path):
    """A dozen fine-tuning steps from the upstream weights on real X-ray patches lower the pixel loss on
    other patches of the same images. (BatchNorm statistics are frozen: batches of 8 tiny patches would
    otherwise replace ImageNet-era statistics with noise, which a short run cannot recover from.)"""
    cfg = small_config(tmp_path / "run", nih_train_list, upstream_weights, **{"run.steps_pretrain": 12,
                       "optim.lr_g": 1e-4, "optim.batch_size": 8, "optim.ema_decay": 0, "optim.freeze_bn": "true",
                       "augment.rotate_p": 0, "augment.clahe_p": 0})
    train(cfg, progress=False)
    ds = PatchDataset([Path(p) for p in nih_train_list.read_text().split()], hr_size=64, augment=None)
    sampler = iter(StepSampler(len(ds), 16, seed=99))
    batch = [ds[next(sampler)] for _ in range(32)]
    lr = torch.stack([b[0] for b in batch]).expand(-1, 3, -1, -1)
    hr = torch.stack([b[1] for b in batch])
    before, _ = load_generator(upstream_weights)
    after = export_generator(tmp_path / "run", tmp_path / "after.safetensors", use_ema=False, checkpoint="last.pt")
    after, meta = load_generator(after)
    with torch.no_grad():
        loss_before = torch.mean((before.eval()(lr).mean(1, keepdim=True) - hr) ** 2).item()
        loss_after = torch.mean((after.eval()(lr).mean(1, keepdim=True) - hr) ** 2).item()
    assert loss_after < loss_before
    assert meta["weights"] == "raw" and json.loads(meta["recipe"])["data"]["hr_size"] == 64

    # the CLI over export_generator: EMA-less run, so --raw; an existing file is kept unless --overwrite
    out = tmp_path / "cli.safetensors"
    assert main(["export-weights", str(tmp_path / "run"), "-o", str(out), "--checkpoint", "last.pt", "--raw"]) == 0
    assert main(["export-weights", str(tmp_path / "run"), "-o", str(out), "--checkpoint", "last.pt", "--raw"]) == 1
    assert main(["export-weights", str(tmp_path / "run"), "-o", str(out), "--checkpoint", "last.pt", "--raw",
                 "--overwrite"]) == 0
    assert main(["export-weights", str(tmp_path / "run"), "-o", str(tmp_path / "x.pt")]) == 2
    assert main(["export-weights", str(tmp_path / "nothing"), "-o", str(tmp_path / "y.safetensors")]) == 1
    assert torch.equal(load_generator(out)[0].state_dict()["initial.cnn.depthwise.weight"],
                       after.state_dict()["initial.cnn.depthwise.weight"])

    # a blend towards the start is the interpolation of the two, tensor by tensor, and says so in its metadata
    blend = tmp_path / "blend.safetensors"
    assert main(["export-weights", str(tmp_path / "run"), "-o", str(blend), "--checkpoint", "last.pt", "--raw",
                 "--blend-with", str(upstream_weights), "--blend", "0.25"]) == 0
    blended, blend_meta = load_generator(blend)
    for key, value in blended.state_dict().items():
        if value.is_floating_point():
            want = 0.25 * after.state_dict()[key] + 0.75 * before.state_dict()[key]
            assert torch.allclose(value, want, atol=1e-6), key
    assert json.loads(blend_meta["blend"]) == {"run": 0.25, "with": upstream_weights.name, "with_weight": 0.75,
                                              "with_sha256": hashlib.sha256(upstream_weights.read_bytes()).hexdigest()}
    assert blend_meta["total_steps"] == meta["total_steps"]
    # its val_psnr is the blend's own score on the run's validation image, not the run's
    from cxrsr.evaluation.evaluate import score_pairs
    from cxrsr.evaluation.protocol import load_pair

    pair = load_pair(json.loads((tmp_path / "run" / "split.json").read_text())["val"][0])
    with torch.no_grad():
        out = blended.eval()(torch.from_numpy(pair.lr.astype(np.float32))[None, None].expand(1, 3, -1, -1))
    want_psnr = score_pairs([pair], lambda lr: out.mean(1)[0].numpy().astype(np.float64))[0].psnr
    assert float(blend_meta["val_psnr"]) == pytest.approx(want_psnr, abs=1e-3)
    assert not torch.equal(blended.state_dict()["initial.cnn.depthwise.weight"],
                           after.state_dict()["initial.cnn.depthwise.weight"])
    no_with = ["export-weights", str(tmp_path / "run"), "-o", str(tmp_path / "b2.safetensors"), "--blend", "0.5"]
    assert main(no_with) == 2
    assert main(["export-weights", str(tmp_path / "run"), "-o", str(tmp_path / "b3.safetensors"), "--checkpoint",
                 "last.pt", "--blend-with", str(upstream_weights), "--blend", "1.5"]) == 1
    assert not (tmp_path / "b3.safetensors").exists()


def test_resume_reproduces_an_uninterrupted_run(nih_train_list, upstream_weights, tmp_path):
    common = {"loss.adversarial_weight": 0.001, "optim.ema_decay": 0.9, "run.val_every": 2}
    full = small_config(tmp_path / "full", nih_train_list, upstream_weights,
                        **{"run.steps_pretrain": 2, "run.steps_gan": 3, **common})
    train(full, progress=False)
    part = small_config(tmp_path / "part", nih_train_list, upstream_weights,
                        **{"run.steps_pretrain": 2, "run.steps_gan": 1, **common})
    train(part, progress=False)
    rest = small_config(tmp_path / "part", nih_train_list, upstream_weights,
                        **{"run.steps_pretrain": 2, "run.steps_gan": 3, **common})
    train(rest, resume=True, progress=False)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 5
    for part_name in ("generator", "discriminator", "ema"):
        for key, value in a[part_name].items():
            assert torch.equal(value, b[part_name][key]), f"{part_name}.{key}"
    assert (tmp_path / "part" / "config.json").exists() and (tmp_path / "part" / "split.json").exists()
    assert any((tmp_path / "part" / "tensorboard").iterdir())


def test_torchrun_two_processes_end_with_identical_weights(nih_train_list, upstream_weights, tmp_path):
    import socket

    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "cxrsr", "train", "--out", str(out), "--init", str(upstream_weights), "--device", "cpu",
           "--set", f'data.train="{nih_train_list}"', "--set", "data.hr_size=64", "--set", "data.workers=0",
           "--set", "optim.batch_size=4", "--set", "loss.perceptual_weight=0", "--set", "run.steps_pretrain=2",
           "--set", "run.steps_gan=2", "--set", "loss.adversarial_weight=0.001", "--set", "run.log_every=1"]
    # a rank that dies on a signal prints its Python and C++ stacks, and the message keeps both ends of stderr
    # (the ranks' own errors come first, torchrun's summary last)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1", "TORCH_SHOW_CPP_STACKTRACES": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    err = result.stderr
    assert result.returncode == 0, err if len(err) < 8000 else f"{err[:5000]}\n[...]\n{err[-3000:]}"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    digests = next(r["ranks_generator_sha256"] for r in records if "ranks_generator_sha256" in r)
    assert len(digests) == 2 and digests[0] == digests[1]


def test_eval_cli_writes_table_csv_and_json(tmp_path, capsys, tiny_weights):
    folder = tmp_path / "set"
    folder.mkdir()
    for p in sorted(require(CXR / "nih" / "test").glob("*.png"))[:2]:
        (folder / p.name).symlink_to(p)
    rc = main(["eval", str(folder), "--weights", tiny_weights, "--baselines", "bicubic,lanczos",
               "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv")])
    assert rc == 0
    table = capsys.readouterr().out
    assert "bicubic" in table and "lanczos" in table and "tiny" in table
    data = json.loads((tmp_path / "r.json").read_text())["sets"][str(folder)]
    assert set(data) == {"bicubic", "lanczos", "tiny"}
    assert data["bicubic"]["n"] == 2 and 30 < data["bicubic"]["psnr"] < 50 and 0.8 < data["bicubic"]["ssim"] <= 1
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 1 + 3 * 2


def test_eval_cli_skips_bad_images_and_folders_reports_them_and_scores_the_rest(tmp_path, capsys):
    folder = tmp_path / "set"
    folder.mkdir()
    good = sorted(require(CXR / "nih" / "test").glob("*.png"))[0]
    (folder / good.name).symlink_to(good)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(folder / "small.png")
    rc = main(["eval", str(folder), str(tmp_path / "missing"), "--json", str(tmp_path / "r.json"),
               "--csv", str(tmp_path / "r.csv")])
    captured = capsys.readouterr()
    assert rc == 1
    assert "broken.png" in captured.err and "small.png" in captured.err and "16x16" in captured.err
    assert "missing: not a folder" in captured.err and "3 folder(s) or image(s) skipped" in captured.err
    data = json.loads((tmp_path / "r.json").read_text())["sets"]
    assert list(data) == [str(folder)] and data[str(folder)]["bicubic"]["n"] == 1
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 2
    assert not list(tmp_path.glob(".*part"))  # atomic writes leave no temporary files

    rc = main(["eval", str(tmp_path / "missing"), "--csv", str(tmp_path / "none.csv")])
    assert rc == 1 and "nothing to evaluate" in capsys.readouterr().err and not (tmp_path / "none.csv").exists()


def test_config_overrides_name_the_key_when_a_value_has_the_wrong_type():
    assert load_config(None, ["data.cache=false", "optim.betas=[0.8, 0.99]"]).optim.betas == (0.8, 0.99)
    for override, message in [("data.hr_size=abc", "data.hr_size: expected an integer"),
                              ("data.hr_size=1.5", "data.hr_size: expected an integer"),
                              ("data.cache=False", "data.cache: expected true or false"),
                              ("optim.betas=[0.9]", "optim.betas: expected a list of 2 values"),
                              ("optim.lr_g=fast", "optim.lr_g: expected a number")]:
        with pytest.raises(ValueError, match=message):
            load_config(None, [override])


def test_bicubic_on_nih_test_matches_the_recorded_anchor(tmp_path):
    """The protocol implementation reproduces the anchor measured independently: 38.37 dB / 0.9641."""
    from cxrsr.evaluation import BASELINES, evaluate, summarise

    folder = require(CXR / "nih" / "test")
    result = summarise(evaluate([folder], {"bicubic": BASELINES["bicubic"]}))[str(folder)]["bicubic"]
    assert result["n"] == 60
    assert result["psnr"] == pytest.approx(38.37, abs=0.01) and result["ssim"] == pytest.approx(0.9641, abs=1e-4)


def test_perceptual_loss_offline_and_its_missing_weights_error(tmp_path, monkeypatch):
    from conftest import SHARED
    from cxrsr.training.losses import MOBILENET_FILE, PerceptualLoss

    source = require(SHARED / "weights" / MOBILENET_FILE)
    empty = tmp_path / "empty_home"
    monkeypatch.setenv("TORCH_HOME", str(empty))
    with pytest.raises(RuntimeError) as info:
        PerceptualLoss()
    assert MOBILENET_FILE in str(info.value) and str(empty) in str(info.value)
    home = tmp_path / "home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    (home / "hub" / "checkpoints" / MOBILENET_FILE).symlink_to(source)
    monkeypatch.setenv("TORCH_HOME", str(home))
    loss = PerceptualLoss()
    x = torch.rand(2, 1, 64, 64)
    assert loss(x, x).item() == 0.0
    assert loss(x, torch.rand(2, 1, 64, 64)).item() > 0


def test_run_splits_one_folder_by_patient_and_records_it(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for p in sorted(require(CXR / "nih" / "train").glob("*.png"))[:40]:
        (folder / p.name).symlink_to(p)
    cfg = load_config(None, [f'run.out="{tmp_path / "run"}"', f'data.images="{folder}"', "data.hr_size=64",
                             "data.workers=0", "optim.batch_size=2", "loss.perceptual_weight=0",
                             "run.steps_pretrain=1", "data.split_fractions=[0.6, 0.2, 0.2]",
                             "data.val_max_images=1", 'run.device="cpu"'])
    train(cfg, progress=False)
    recorded = json.loads((tmp_path / "run" / "split.json").read_text())
    expected = split_by_patient(sorted(folder.glob("*.png")), (0.6, 0.2, 0.2))
    assert recorded == {k: [str(p) for p in v] for k, v in expected.items()}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["images"] == str(folder)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_resume_continues(nih_train_list, upstream_weights, tmp_path,
                                                                   signame):
    import signal
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "cxrsr", "train", "--out", str(out), "--init", str(upstream_weights),
           "--device", "cpu", "--set", f'data.train="{nih_train_list}"', "--set", "data.hr_size=64",
           "--set", "data.workers=0", "--set", "optim.batch_size=2", "--set", "loss.perceptual_weight=0",
           "--set", "run.steps_pretrain=100000", "--set", "run.log_every=1", "--set", "run.ckpt_every=100000",
           "--set", "run.val_every=100000"]
    # SIGINT at its default even when the test runs in a background job (which starts with it ignored)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.2)
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    step = torch.load(out / "last.pt", weights_only=True)["step"]
    assert 3 <= step < 100000
    assert "checkpoint saved" in err and "Traceback" not in err
    rc = subprocess.run([sys.executable, "-m", "cxrsr", "train", "--out", str(out), "--resume",
                         "--set", f"run.steps_pretrain={step + 2}"], capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr[-2000:]
    assert torch.load(out / "last.pt", weights_only=True)["step"] == step + 2


def test_a_cpu_budget_ends_the_run_and_a_larger_one_continues_it(nih_train_list, upstream_weights, tmp_path):
    cfg = small_config(tmp_path / "run", nih_train_list, upstream_weights,
                       **{"run.steps_pretrain": 100000, "run.cpu_budget_s": 3.0, "optim.schedule": '"constant"',
                          "optim.warmup_steps": 2})
    first = train(cfg, progress=False)
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert 0 < first["steps"] < 100000 and ckpt["step"] == first["steps"]
    assert ckpt["cpu_seconds"] >= 3.0
    assert first["history"][-1]["step"] == first["steps"]  # the last step is validated, as at a run's end
    more = small_config(tmp_path / "run", nih_train_list, upstream_weights,
                        **{"run.steps_pretrain": 100000, "run.cpu_budget_s": ckpt["cpu_seconds"] + 3.0,
                           "optim.schedule": '"constant"', "optim.warmup_steps": 2})
    second = train(more, resume=True, progress=False)
    assert second["steps"] > first["steps"]
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    lrs = [json.loads(line)["lr/generator"] for line in metrics if "lr/generator" in line]
    assert lrs[-1] == pytest.approx(cfg.optim.lr_g)  # constant after the warm-up, also across the resume


def test_the_loop_pieces_run_alone(nih_train_list, upstream_weights, tmp_path):
    from cxrsr.training.loop import periodic_validation_and_checkpoint, setup, train_step

    cfg = small_config(tmp_path / "run", nih_train_list, upstream_weights,
                       **{"run.steps_pretrain": 2, "run.ckpt_every": 1, "optim.ema_decay": 0})
    run = setup(cfg)
    before = run.generator.initial.cnn.depthwise.weight.detach().clone()
    lr = torch.rand(4, 1, 16, 16)
    hr = torch.rand(4, 1, 64, 64)
    losses = train_step(run, lr, hr)
    assert run.step == 1 and set(losses) >= {"loss/generator", "loss/pixel", "loss/discriminator"}
    assert not torch.equal(before, run.generator.initial.cnn.depthwise.weight)
    periodic_validation_and_checkpoint(run)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 1
