"""Where should augmentation run? Measures, on one device:
  0. what one sample costs, stage by stage (decode, crop, rotation, CLAHE, flips, protocol LR), in ms;
  1. the data loader alone (CPU workers: read, crop, rotate, CLAHE, flips, protocol LR), samples/s, with
     each worker decoding the files it meets (cold) and after the dataset's preload (as training runs it);
  2. the training step alone (generator + perceptual loss, fwd + bwd + AdamW) on batches already on the device;
  3. the real training loop (cxrsr.training.train) for a few steps, images/s from its own log.

    python benchmarks/train_throughput.py --train ../shared/data/cxr/nih/train --device cuda --workers 0 4 8 16
    python benchmarks/train_throughput.py --train ../shared/data/cxr/nih/train --workers 0 1 2 --loader-only

The loop is loader-bound when (1) < (3)'s potential, i.e. when (1) is below (2).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from cxrsr.data import AugmentConfig, PatchDataset, StepSampler, make_lr
from cxrsr.data.augment import random_patch
from cxrsr.data.splits import list_image_files
from cxrsr.evaluation.protocol import load_grey
from cxrsr.inference.device import resolve_device
from cxrsr.models import Generator
from cxrsr.training import load_config, train
from cxrsr.training.losses import PerceptualLoss, pixel_loss


def loader_rate(files, workers: int, batch: int, hr: int, batches: int,
                preload: bool = False) -> tuple[float, list[float], float]:
    """Samples/s of the DataLoader, cold (each worker decodes, and caches, the files it meets) or after
    PatchDataset.preload (as cxrsr.training.train does: every image decoded once, before the workers start);
    also each worker's private memory and the main process's cache at the end, in GiB."""
    ds = PatchDataset(files, hr_size=hr, augment=AugmentConfig())
    if preload:
        ds.preload()
    loader = DataLoader(ds, batch_size=batch, sampler=StepSampler(len(ds), batch, seed=0), num_workers=workers,
                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
    it = iter(loader)
    next(it)  # start-up and first batch not timed
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * batch / (time.perf_counter() - t)
    memory = [private_gib(w.pid) for w in getattr(it, "_workers", [])]
    return rate, [round(m, 2) for m in memory if m is not None], round(ds.cache_bytes / 2**30, 2)


def private_gib(pid: int) -> float | None:
    """Memory that process ``pid`` alone holds (Linux: private clean + dirty pages), in GiB."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    except OSError:
        return None
    return (int(fields["Private_Clean"].split()[0]) + int(fields["Private_Dirty"].split()[0])) / 2**20


def sample_costs(files, hr: int, n: int = 24) -> tuple[float, float]:
    """Milliseconds per sample in this process: first touch of each file (decode + augment + LR), then again
    with the decoded image in the dataset's per-worker cache (augment + LR only)."""
    ds = PatchDataset(files[:n], hr_size=hr, augment=AugmentConfig())
    times = []
    for rounds in range(2):
        t = time.perf_counter()
        for i in range(len(ds)):
            ds[(i, rounds * n + i)]
        times.append((time.perf_counter() - t) / len(ds) * 1000)
    return times[0], times[1]


def stage_costs(files, hr: int, n: int = 24) -> dict[str, float]:
    """Milliseconds per sample of each stage alone, on decoded images: decode (PNG/JPEG/TIFF/DICOM reader),
    crop, rotation, CLAHE and flips each applied with probability 1 (crop time subtracted), protocol LR."""
    off = dict(rotate_p=0.0, clahe_p=0.0, hflip_p=0.0, vflip_p=0.0)
    variants = {"crop": AugmentConfig(**off), "rotation": AugmentConfig(**{**off, "rotate_p": 1.0}),
                "clahe": AugmentConfig(**{**off, "clahe_p": 1.0}),
                "flips": AugmentConfig(**{**off, "hflip_p": 1.0, "vflip_p": 1.0})}
    t = time.perf_counter()
    images = [load_grey(f).astype(np.float32) for f in files[:n]]
    costs = {"decode": (time.perf_counter() - t) / len(images) * 1000}
    for name, aug in variants.items():
        rng = np.random.default_rng(0)
        t = time.perf_counter()
        patches = [random_patch(im, hr, rng, aug) for im in images]
        costs[name] = (time.perf_counter() - t) / len(images) * 1000
    t = time.perf_counter()
    for patch in patches:
        make_lr(patch.astype(np.float64))
    costs["protocol LR"] = (time.perf_counter() - t) / len(images) * 1000
    for name in ("rotation", "clahe", "flips"):
        costs[name] = max(0.0, costs[name] - costs["crop"])
    return costs


def step_rate(device: torch.device, batch: int, hr: int, steps: int, amp: bool, perceptual: bool) -> float:
    g = Generator().to(device).train()
    opt = torch.optim.AdamW(g.parameters(), lr=1e-4)
    ploss = PerceptualLoss().to(device) if perceptual else None
    lr = torch.rand(batch, 3, hr // 4, hr // 4, device=device)
    target = torch.rand(batch, 3, hr, hr, device=device)
    dtype = torch.bfloat16 if device.type == "cuda" else None

    def one() -> None:
        with torch.autocast(device.type, dtype=dtype) if amp and dtype else torch.autocast(device.type, enabled=False):
            sr = g(lr)
            loss = pixel_loss("mse", sr, target) + (0.006 * ploss(sr, target) if ploss else 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hr", type=int, default=256)
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--no-perceptual", action="store_true")
    p.add_argument("--loader-only", action="store_true", help="measure the loader alone (1), e.g. on a CPU machine")
    args = p.parse_args()
    device = resolve_device(args.device)
    files = list_image_files(args.train)
    results = {"device": str(device), "batch": args.batch, "hr": args.hr}
    cold, warm = sample_costs(files, args.hr)
    results["sample_ms_first_read"], results["sample_ms_cached"] = round(cold, 2), round(warm, 2)
    print(f"one sample in one process: {cold:.1f} ms on first read of its file, {warm:.1f} ms once cached", flush=True)
    stages = stage_costs(files, args.hr)
    results["stage_ms"] = {k: round(v, 2) for k, v in stages.items()}
    print("per sample, each stage alone (probability 1): "
          + ", ".join(f"{k} {v:.2f} ms" for k, v in stages.items()), flush=True)
    t = time.perf_counter()
    cached = PatchDataset(files, hr_size=args.hr).preload()
    results["preload_s"] = round(time.perf_counter() - t, 2)
    print(f"preload: {cached} of {len(files)} images decoded in {results['preload_s']} s", flush=True)
    for w in args.workers:
        for preload in (False, True):
            key = f"loader_samples_per_s_workers_{w}" + ("_preloaded" if preload else "")
            rate, private, cached = loader_rate(files, w, args.batch, args.hr, args.batches, preload)
            results[key] = round(rate, 1)
            results[key.replace("samples_per_s", "private_gib")] = private
            print(f"loader, {w} workers, {'preloaded' if preload else 'cold'}: {results[key]} samples/s; "
                  f"main process cache {cached:.2f} GiB, private memory of each worker "
                  f"{', '.join(f'{m:.2f}' for m in private) or '-'} GiB", flush=True)
    if args.loader_only:
        print(json.dumps(results))
        return
    results["step_images_per_s"] = round(step_rate(device, args.batch, args.hr, args.steps, True,
                                                   not args.no_perceptual), 1)
    print(f"training step alone: {results['step_images_per_s']} images/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [f'run.out="{tmp}/run"', f'data.train="{args.train}"', f"data.hr_size={args.hr}",
                                 f"data.workers={max(args.workers)}", f"optim.batch_size={args.batch}",
                                 f"run.steps_pretrain={args.steps + 2}", "run.log_every=1",
                                 f'run.device="{device}"', "run.val_every=100000", "run.ckpt_every=100000"]
                          + (["loss.perceptual_weight=0"] if args.no_perceptual else []))
        train(cfg, progress=False)
        speeds = [json.loads(line).get("speed/images_per_s") for line in Path(f"{tmp}/run/metrics.jsonl").open()]
        results["loop_images_per_s"] = round([s for s in speeds if s][-1], 1)
    print(f"training loop with loader: {results['loop_images_per_s']} images/s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
