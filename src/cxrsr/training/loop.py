"""The training loop, top to bottom: set-up, data, models, optimisers, then one loop over steps with
validation, checkpoints and logging. Runs on one CPU, one GPU, or several GPUs under torchrun (DDP, detected
from the RANK / WORLD_SIZE environment variables); logs and checkpoints come from rank 0 only."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from ..data.dataset import PatchDataset, StepSampler
from ..data.splits import list_image_files, read_split, split_by_patient, write_split
from ..evaluation.evaluate import score_pairs
from ..evaluation.protocol import load_pair
from ..inference.allocator import tune_cpu_allocator
from ..inference.device import resolve_device
from ..models import Discriminator, Generator, GeneratorConfig
from ..weights import load_generator, resolve_weights, save_generator
from .config import TrainConfig, save_config
from .depthwise import use_fast_depthwise
from .frozen_bn import fold_frozen_batchnorm
from .losses import PerceptualLoss, discriminator_loss, generator_adversarial, pixel_loss, total_variation

log = logging.getLogger(__name__)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train (or resume) a run; returns a summary (steps, best val PSNR, time)."""
    # ---- distributed set-up and device
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    distributed = world > 1
    if distributed:
        local = int(os.environ.get("LOCAL_RANK", 0))
        use_cuda = torch.cuda.is_available() and cfg.run.device != "cpu"
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        device = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    else:
        device = resolve_device(cfg.run.device)
    main_process = rank == 0
    if device.type == "cpu":
        tune_cpu_allocator()  # activations reused from the heap, not faulted in anew (inference/allocator.py)
    if cfg.optim.batch_size % world:
        raise ValueError(f"batch size {cfg.optim.batch_size} is not divisible by {world} processes")
    per_rank_batch = cfg.optim.batch_size // world
    if cfg.run.deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    _seed_everything(cfg.run.seed)

    run_dir = Path(cfg.run.out)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume and last_path.exists():
            raise FileExistsError(f"{run_dir} already holds a run; use --resume or another --out")

    # ---- data
    split = None
    if cfg.data.split_file:
        split = read_split(cfg.data.split_file)
    elif cfg.data.images:
        split = split_by_patient(list_image_files(cfg.data.images), tuple(cfg.data.split_fractions),
                                 seed=cfg.data.split_seed, regex=cfg.data.patient_regex,
                                 csv_file=cfg.data.patient_csv or None)
    if split is not None:
        train_files, val_files = split["train"], split.get("val", [])
    else:
        train_files = list_image_files(cfg.data.train)
        val_files = list_image_files(cfg.data.val) if cfg.data.val else []
    if cfg.data.val_max_images:
        val_files = val_files[: cfg.data.val_max_images]
    if main_process:
        write_split(split or {"train": train_files, "val": val_files}, run_dir / "split.json")
        save_config(cfg, run_dir / "config.json")
    val_pairs = [load_pair(p) for p in val_files] if main_process else []

    # ---- models, optimisers, precision
    generator, init_metadata = _initial_generator(cfg)
    generator = generator.to(device)
    discriminator = Discriminator(_disc_config(generator)).to(device)
    memory_format = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
    generator.to(memory_format=memory_format)
    discriminator.to(memory_format=memory_format)
    if cfg.run.fast_depthwise and device.type == "cpu":
        use_fast_depthwise(generator)
    if cfg.optim.freeze_bn and cfg.run.fold_frozen_bn:
        fold_frozen_batchnorm(generator)
    _freeze_unused(generator)
    ema = (AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema_decay), use_buffers=True)
           if cfg.optim.ema_decay > 0 else None)
    if ema is not None and cfg.run.init:
        # the starting weights count as averaged already: the EMA moves away from them at the decay's pace
        # instead of being replaced by the first step's raw weights
        ema.n_averaged.fill_(1)
    opt_g = torch.optim.AdamW([p for p in generator.parameters() if p.requires_grad], lr=cfg.optim.lr_g,
                              betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay)
    opt_d = torch.optim.AdamW(discriminator.parameters(), lr=cfg.optim.lr_d, betas=cfg.optim.betas,
                              weight_decay=cfg.optim.weight_decay)
    total_steps = cfg.run.steps_pretrain + cfg.run.steps_gan
    sched_g = _scheduler(opt_g, cfg, total_steps)
    sched_d = _scheduler(opt_d, cfg, cfg.run.steps_gan)  # the discriminator trains in the adversarial phase only
    per_step_schedule = cfg.optim.schedule in ("cosine", "constant")
    amp_dtype = _amp_dtype(cfg.optim.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    perceptual = PerceptualLoss().to(device) if cfg.loss.perceptual_weight > 0 else None

    step, best_psnr, history, seconds_before, cpu_before = 0, -math.inf, [], 0.0, 0.0
    if resume:
        ckpt = torch.load(last_path, map_location="cpu", weights_only=True)
        generator.load_state_dict(ckpt["generator"])
        discriminator.load_state_dict(ckpt["discriminator"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        sched_g.load_state_dict(ckpt["sched_g"])
        sched_d.load_state_dict(ckpt["sched_d"])
        scaler.load_state_dict(ckpt["scaler"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        step, best_psnr, history = ckpt["step"], ckpt["best_psnr"], ckpt["history"]
        seconds_before = ckpt.get("train_seconds", 0.0)
        # checkpoints from before CPU time was recorded: their wall time times the threads
        cpu_before = ckpt.get("cpu_seconds", seconds_before * ckpt.get("threads", 1))
        _set_rng_state(ckpt["rng"])

    g_train = DDP(generator, device_ids=[device.index] if device.type == "cuda" else None) if distributed else generator
    d_train = DDP(discriminator, device_ids=[device.index] if device.type == "cuda" else None) if distributed else discriminator

    dataset = PatchDataset(train_files, cfg.data.hr_size, generator.config.scale, cfg.augment, cfg.data.cache,
                           cfg.data.cache_gb)
    t_preload = time.perf_counter()
    cached = dataset.preload()
    log.info("cached %d of %d training images (%.2f GiB) in %.1f s", cached, len(dataset),
             dataset.cache_bytes / 2**30, time.perf_counter() - t_preload)
    sampler = StepSampler(len(dataset), per_rank_batch, cfg.run.seed, start_step=step, rank=rank, world_size=world)
    loader = DataLoader(dataset, batch_size=per_rank_batch, sampler=sampler, num_workers=cfg.data.workers,
                        pin_memory=device.type == "cuda", persistent_workers=cfg.data.workers > 0,
                        prefetch_factor=4 if cfg.data.workers > 0 else None)
    writer = _summary_writer(run_dir) if main_process else None

    def save(path: Path) -> None:
        if not main_process:
            return
        state = {
            "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "sched_g": sched_g.state_dict(), "sched_d": sched_d.state_dict(), "scaler": scaler.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "step": step, "best_psnr": best_psnr, "history": history, "rng": _get_rng_state(),
            "config": cfg.to_dict(), "generator_config": generator.config.to_dict(),
            "train_seconds": seconds_before + time.perf_counter() - t0, "threads": torch.get_num_threads(),
            "cpu_seconds": cpu_before + _cpu_seconds() - cpu0,
            "device_type": device.type, "init_metadata": init_metadata,
        }
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def validate(model: Generator) -> float:
        """Validation PSNR at the current step, scored on rank 0 and shared with every rank."""
        psnr_val = _validate(model, val_pairs, device, writer, run_dir, step) if main_process else 0.0
        if distributed:
            shared = torch.tensor([psnr_val], device=device)
            dist.broadcast(shared, 0)
            psnr_val = float(shared.item())
        return psnr_val

    # ---- the loop
    previous_sigterm = _sigterm_as_interrupt()
    bar = None
    if progress and main_process:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=step, unit="step", desc="training", disable=None)
    data_iter = iter(loader)
    t0, images_seen, paused = time.perf_counter(), 0, 0.0  # paused: validation and checkpoints, not in the speed
    cpu0 = _cpu_seconds()
    if not resume and step == 0 and cfg.run.validate_init and val_files:
        # Score the starting weights, so that best.pt (what export-weights takes) can only improve on them: a
        # new stretch started from exported weights never loses what the last one reached.
        psnr_val = validate(generator)
        best_psnr = psnr_val
        history.append({"step": 0, "val_psnr": psnr_val, "lr_g": opt_g.param_groups[0]["lr"], "elapsed_s": 0.0})
        save(best_path)
        paused += time.perf_counter() - t0
    finished = False
    try:
        while step < total_steps:
            adversarial = step >= cfg.run.steps_pretrain and cfg.loss.adversarial_weight > 0
            lr_img, hr_img = next(data_iter)
            lr_img = lr_img.to(device, non_blocking=True).expand(-1, 3, -1, -1).contiguous(memory_format=memory_format)
            hr_img = hr_img.to(device, non_blocking=True).expand(-1, 3, -1, -1).contiguous(memory_format=memory_format)
            g_train.train()
            d_train.train()
            if cfg.optim.freeze_bn:
                for module in generator.modules():
                    if isinstance(module, torch.nn.BatchNorm2d):
                        module.eval()
            autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()

            # generator step
            with autocast:
                sr = g_train(lr_img)
                loss_pix = pixel_loss(cfg.loss.pixel, sr, hr_img)
                loss_g = cfg.loss.pixel_weight * loss_pix
                loss_perc = perceptual(sr, hr_img) if perceptual is not None else torch.zeros((), device=device)
                loss_g = loss_g + cfg.loss.perceptual_weight * loss_perc
                if cfg.loss.tv_weight > 0:
                    loss_g = loss_g + cfg.loss.tv_weight * total_variation(sr.float())
                loss_adv = torch.zeros((), device=device)
                if adversarial:
                    # real and fake through D together, so its BatchNorm sees the same mixture as in the D step
                    logits = d_train(torch.cat([hr_img, sr]))
                    loss_adv = generator_adversarial(logits[hr_img.shape[0]:])
                    loss_g = loss_g + cfg.loss.adversarial_weight * loss_adv
            _backward_and_step(loss_g, opt_g, scaler, generator, cfg.optim.grad_clip)

            # discriminator step
            loss_d = torch.zeros((), device=device)
            if adversarial:
                with autocast:
                    logits = d_train(torch.cat([hr_img, sr.detach()]))
                    n = hr_img.shape[0]
                    loss_d = discriminator_loss(logits[:n], logits[n:])
                _backward_and_step(loss_d, opt_d, scaler, discriminator, cfg.optim.grad_clip)
            scaler.update()
            if per_step_schedule:
                sched_g.step()
                if adversarial:
                    sched_d.step()
            if ema is not None:
                ema.update_parameters(generator)
            step += 1
            images_seen += cfg.optim.batch_size

            if main_process and (step % cfg.run.log_every == 0 or step == total_steps):
                rate = images_seen / (time.perf_counter() - t0 - paused)
                scalars = {"loss/generator": loss_g.item(), "loss/pixel": loss_pix.item(),
                           "loss/perceptual": loss_perc.item(), "loss/adversarial": loss_adv.item(),
                           "loss/discriminator": loss_d.item(), "lr/generator": opt_g.param_groups[0]["lr"],
                           "speed/images_per_s": rate}
                _log_scalars(writer, run_dir, step, scalars)
                if bar is not None:
                    bar.set_postfix(loss=f"{loss_g.item():.4g}", img_s=f"{rate:.1f}")
            if bar is not None:
                bar.update(1)

            if cfg.run.cpu_budget_s and _budget_spent(cpu_before + _cpu_seconds() - cpu0, cfg, distributed, device):
                total_steps = step  # the budget is spent: this step is the run's last
            t_pause = time.perf_counter()
            if step % cfg.run.val_every == 0 or step == total_steps:
                psnr_val = validate(ema.module if ema is not None else generator)
                if val_files:
                    if not per_step_schedule:
                        sched_g.step(psnr_val)
                        sched_d.step(psnr_val)
                    history.append({"step": step, "val_psnr": psnr_val, "lr_g": opt_g.param_groups[0]["lr"],
                                    "elapsed_s": time.perf_counter() - t0})
                    if psnr_val > best_psnr:
                        best_psnr = psnr_val
                        save(best_path)
            if step % cfg.run.ckpt_every == 0 or step == total_steps:
                save(last_path)
            paused += time.perf_counter() - t_pause
    except KeyboardInterrupt:
        save(last_path)
        if main_process:
            log.warning("interrupted at step %d; checkpoint saved to %s (continue with --resume)", step, last_path)
        raise
    else:
        if distributed:  # every rank must end with the same weights; rank 0 records the evidence
            # Parameters agree through the gradient all-reduce; BatchNorm running statistics are updated from
            # each rank's own batch after DDP's per-forward broadcast, so take rank 0's (the saved ones).
            for module in (generator, discriminator):
                for buffer in module.buffers():
                    dist.broadcast(buffer, 0)
            digests: list[str] = [""] * world
            dist.all_gather_object(digests, _weights_digest(generator))
            if main_process:
                _log_scalars(None, run_dir, step, {"ranks_generator_sha256": digests})
            if len(set(digests)) != 1:
                raise RuntimeError(f"generator weights differ between ranks at step {step}")
        finished = True
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        if distributed:
            if finished:  # no rank closes its connections while a peer may still be sending to it
                dist.barrier()
            dist.destroy_process_group()
    return {"steps": step, "best_val_psnr": best_psnr, "seconds": time.perf_counter() - t0, "history": history}


def export_generator(run: str | Path, out: str | Path, use_ema: bool = True, checkpoint: str = "best.pt",
                     **metadata) -> Path:
    """Write a run's generator (EMA weights by default) as a cxrsr safetensors file."""
    run = Path(run)
    path = run / checkpoint if (run / checkpoint).exists() else run / "last.pt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    generator = Generator(GeneratorConfig(**ckpt["generator_config"]))
    if use_ema and ckpt.get("ema"):
        state = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    else:
        state = ckpt["generator"]
    generator.load_state_dict(state)
    meta = {"recipe": json.dumps(ckpt["config"], separators=(",", ":")), "step": ckpt["step"],
            "weights": "ema" if use_ema and ckpt.get("ema") else "raw", "checkpoint": path.name}
    # the validation score of the exported weights themselves: the entry at this checkpoint's step (best.pt is
    # saved right after its validation; last.pt has one when the run ended on a validation step)
    scored = [h["val_psnr"] for h in ckpt.get("history") or [] if h["step"] == ckpt["step"]]
    if scored and math.isfinite(scored[-1]):
        meta["val_psnr"] = f"{scored[-1]:.4f}"
    # compute counts every step the run took, also those after the checkpoint whose weights are exported
    last = ckpt
    if path.name != "last.pt" and (run / "last.pt").exists():
        last = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    meta.update(training_compute(last, run.name))
    meta.update(metadata)
    return save_generator(generator, out, **meta)


def training_compute(ckpt: dict, run_name: str) -> dict[str, str]:
    """Training compute as safetensors metadata: this run's stretch appended to the stretches recorded in the
    weights it started from (``run.init``), and their totals (steps, samples, CPU- or GPU-hours).

    On the CPU a stretch's hours are the CPU time of its training process (validation and checkpoints included;
    time while the process was stopped or waiting for the cores is not counted); runs that predate that record
    their loop's wall time times the threads. On a GPU, the loop's wall time."""
    cfg = ckpt["config"]
    init_meta = ckpt.get("init_metadata") or {}
    try:
        stretches = json.loads(init_meta.get("training_stretches", "[]"))
    except json.JSONDecodeError:
        stretches = []
    device = ckpt.get("device_type", "cpu")
    wall_h = ckpt.get("train_seconds", 0.0) / 3600
    units = ckpt.get("threads", 1) if device == "cpu" else 1
    busy_h = ckpt["cpu_seconds"] / 3600 if device == "cpu" and "cpu_seconds" in ckpt else wall_h * units
    stretches.append({
        "run": run_name, "init": Path(cfg["run"]["init"]).name if cfg["run"]["init"] else "",
        "steps": ckpt["step"], "samples": ckpt["step"] * cfg["optim"]["batch_size"],
        "hr_size": cfg["data"]["hr_size"], "device": device, "threads": units, "wall_hours": round(wall_h, 3),
        f"{'cpu' if device == 'cpu' else 'gpu'}_hours": round(busy_h, 3),
        "loss": {k: v for k, v in cfg["loss"].items() if v}, "lr_g": cfg["optim"]["lr_g"],
        "schedule": cfg["optim"].get("schedule", "plateau"),
    })
    total = {
        "total_steps": sum(s["steps"] for s in stretches),
        "total_samples": sum(s["samples"] for s in stretches),
        "total_cpu_hours": round(sum(s.get("cpu_hours", 0.0) for s in stretches), 3),
        "total_gpu_hours": round(sum(s.get("gpu_hours", 0.0) for s in stretches), 3),
    }
    return {"training_stretches": json.dumps(stretches, separators=(",", ":")), **{k: str(v) for k, v in total.items()}}


# ------------------------------------------------------------------------------------------------ helpers


def _cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished children (loader workers end with the run)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _budget_spent(cpu_seconds: float, cfg: TrainConfig, distributed: bool, device: torch.device) -> bool:
    """Whether ``run.cpu_budget_s`` is spent; under DDP rank 0's clock decides for every rank."""
    spent = torch.tensor([float(cpu_seconds >= cfg.run.cpu_budget_s)], device=device)
    if distributed:
        dist.broadcast(spent, 0)
    return bool(spent.item())


def _sigterm_as_interrupt():
    """Make SIGTERM (``kill``, a job scheduler's stop; background jobs ignore Ctrl-C's SIGINT) end the loop as
    Ctrl-C does, saving last.pt. Returns the previous handler, or None where signals cannot be set here."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _backward_and_step(loss, optimizer, scaler, module: torch.nn.Module, grad_clip: float) -> None:
    """Backward through the (possibly fp16-scaled) loss, optional gradient clipping, optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
    scaler.step(optimizer)


def _initial_generator(cfg: TrainConfig) -> tuple[Generator, dict[str, str]]:
    """The starting generator and the metadata of its weights file (which carries earlier stretches' compute)."""
    if cfg.run.init:
        return load_generator(resolve_weights(cfg.run.init))  # a file, or a shipped name such as cxr-fidelity
    return Generator(GeneratorConfig()), {}


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """ReduceLROnPlateau on validation PSNR (stepped at each validation), or a cosine decay from the optimiser's
    learning rate to ``optim.lr_min`` over ``total_steps`` (stepped every training step)."""
    if cfg.optim.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=cfg.optim.plateau_factor,
                                                          patience=cfg.optim.plateau_patience)
    if cfg.optim.schedule == "cosine":
        base = optimizer.param_groups[0]["lr"]
        floor = min(cfg.optim.lr_min / base, 1.0) if base > 0 else 1.0
        horizon = max(total_steps, 1)

        warmup = min(cfg.optim.warmup_steps, horizon - 1)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, horizon) / horizon))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if cfg.optim.schedule == "constant":  # after the warm-up, if any: runs of any length, and budgets in CPU time
        warmup = cfg.optim.warmup_steps
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (warmup + 1)))
    raise ValueError(f"optim.schedule must be plateau, cosine or constant, got {cfg.optim.schedule!r}")


def _disc_config(generator: Generator):
    from ..models import DiscriminatorConfig

    return DiscriminatorConfig(in_channels=generator.config.in_channels)


def _freeze_unused(generator: Generator) -> None:
    """Upstream creates PReLUs it never applies (second conv of each residual block, the long-skip block).
    They get no gradient; freezing them keeps DDP from waiting for one."""
    for module in generator.modules():
        if getattr(module, "use_act", True) is False and hasattr(module.act, "weight"):
            module.act.weight.requires_grad_(False)


def _amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    mode = mode.lower()
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    if mode in ("fp16", "auto"):
        return torch.float16
    raise ValueError(f"amp must be auto, bf16, fp16 or off, got {mode!r}")


@torch.no_grad()
def _validate(model: Generator, pairs, device, writer, run_dir: Path, step: int) -> float:
    if not pairs:
        return 0.0
    model.eval()

    def sr(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(lr.astype(np.float32))[None, None].to(device).expand(1, 3, -1, -1)
        return model(x).float().mean(1)[0].cpu().numpy().astype(np.float64)

    scores = score_pairs(pairs, sr)
    psnr_val = float(np.mean([s.psnr for s in scores]))
    ssim_val = float(np.mean([s.ssim for s in scores]))
    _log_scalars(writer, run_dir, step, {"val/psnr": psnr_val, "val/ssim": ssim_val})
    if writer is not None:
        pair = pairs[0]
        out = np.clip(sr(pair.lr), 0, 1)
        lr_up = np.kron(pair.lr, np.ones((4, 4)))
        writer.add_image("val/lr_sr_hr", np.concatenate([lr_up, out, pair.hr], axis=1)[None].astype(np.float32), step)
    return psnr_val


def _summary_writer(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed: metrics go to metrics.jsonl only (pip install 'cxrsr[train]')")
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _log_scalars(writer, run_dir: Path, step: int, scalars: dict) -> None:
    if writer is not None:
        for k, v in scalars.items():
            writer.add_scalar(k, v, step)
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": step, **scalars}) + "\n")


def _weights_digest(model: torch.nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _get_rng_state() -> dict:
    """RNG states as plain containers and tensors, so checkpoints load with ``weights_only=True``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
