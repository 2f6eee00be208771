"""The training loop in pieces a reader can see whole: :func:`setup` (processes, data, models, optimisers, a
resumed run's state) builds a :class:`Run`; :func:`train_step` takes one step (:func:`generator_step`, then in
the adversarial phase :func:`discriminator_step`); :func:`periodic_validation_and_checkpoint` scores and saves;
:func:`train` runs them in order with logging. Runs on one CPU, one GPU, or several GPUs under torchrun (DDP,
detected from the RANK / WORLD_SIZE environment variables); logs and checkpoints come from rank 0 only."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
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


@dataclass
class Run:
    """Everything one training run holds: where it runs, its data, models, optimisers and progress. Built by
    :func:`setup`, advanced by :func:`train_step`, scored and saved by :func:`validate` and :func:`save_checkpoint`."""

    cfg: TrainConfig
    device: torch.device
    rank: int
    world: int
    run_dir: Path
    train_files: list
    val_files: list
    val_pairs: list
    generator: Generator
    discriminator: torch.nn.Module
    g_train: torch.nn.Module  # the generator, or its DDP wrapper
    d_train: torch.nn.Module
    ema: AveragedModel | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: object
    sched_d: object
    scaler: torch.amp.GradScaler
    perceptual: PerceptualLoss | None
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format
    init_metadata: dict
    total_steps: int
    step: int = 0
    best_psnr: float = -math.inf
    history: list = field(default_factory=list)
    seconds_before: float = 0.0  # wall and CPU time of earlier stretches (a resumed run)
    cpu_before: float = 0.0
    t0: float = 0.0  # this stretch's clocks, set when its loop starts
    cpu0: float = 0.0
    writer: object = None

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main_process(self) -> bool:
        return self.rank == 0

    @property
    def per_step_schedule(self) -> bool:
        return self.cfg.optim.schedule in ("cosine", "constant")

    def cpu_seconds(self) -> float:
        """CPU time of the run so far, over all its stretches."""
        return self.cpu_before + _cpu_seconds() - self.cpu0


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train (or resume) a run; returns a summary (steps, best val PSNR, time). Runs on one CPU, one GPU, or
    several GPUs under torchrun (DDP, from RANK / WORLD_SIZE); logs and checkpoints come from rank 0 only."""
    run = setup(cfg, resume)
    run_dir, last_path, best_path = run.run_dir, run.run_dir / "last.pt", run.run_dir / "best.pt"
    loader = _loader(run)
    run.writer = _summary_writer(run_dir) if run.main_process else None
    previous_sigterm = _sigterm_as_interrupt()
    bar = None
    if progress and run.main_process:
        from tqdm import tqdm

        bar = tqdm(total=run.total_steps, initial=run.step, unit="step", desc="training", disable=None)
    data_iter = iter(loader)
    run.t0, run.cpu0 = time.perf_counter(), _cpu_seconds()
    images_seen, paused = 0, 0.0  # paused: validation and checkpoints, not in the speed
    if not resume and run.step == 0 and cfg.run.validate_init and run.val_files:
        # Score the starting weights, so that best.pt (what export-weights takes) can only improve on them: a
        # new stretch started from exported weights never loses what the last one reached.
        run.best_psnr = validate(run, run.generator)
        run.history.append({"step": 0, "val_psnr": run.best_psnr, "lr_g": run.opt_g.param_groups[0]["lr"],
                            "elapsed_s": 0.0})
        save_checkpoint(run, best_path)
        paused += time.perf_counter() - run.t0
    finished = False
    try:
        while run.step < run.total_steps:
            losses = train_step(run, *next(data_iter))
            images_seen += cfg.optim.batch_size
            if run.main_process and (run.step % cfg.run.log_every == 0 or run.step == run.total_steps):
                rate = images_seen / (time.perf_counter() - run.t0 - paused)
                _log_scalars(run.writer, run_dir, run.step, {**{k: v.item() for k, v in losses.items()},
                                                             "lr/generator": run.opt_g.param_groups[0]["lr"],
                                                             "speed/images_per_s": rate})
                if bar is not None:
                    bar.set_postfix(loss=f"{losses['loss/generator'].item():.4g}", img_s=f"{rate:.1f}")
            if bar is not None:
                bar.update(1)
            if cfg.run.cpu_budget_s and _budget_spent(run.cpu_seconds(), cfg, run.distributed, run.device):
                run.total_steps = run.step  # the budget is spent: this step is the run's last
            t_pause = time.perf_counter()
            periodic_validation_and_checkpoint(run)
            paused += time.perf_counter() - t_pause
    except KeyboardInterrupt:
        save_checkpoint(run, last_path)
        if run.main_process:
            log.warning("interrupted at step %d; checkpoint saved to %s (continue with --resume)", run.step,
                        last_path)
        raise
    else:
        if run.distributed:
            _agree_across_ranks(run)
        finished = True
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        if bar is not None:
            bar.close()
        if run.writer is not None:
            run.writer.close()
        if run.distributed:
            if finished:  # no rank closes its connections while a peer may still be sending to it
                dist.barrier()
            dist.destroy_process_group()
    return {"steps": run.step, "best_val_psnr": run.best_psnr, "seconds": time.perf_counter() - run.t0,
            "history": run.history}


# ------------------------------------------------------------------------------------------------- set-up


def setup(cfg: TrainConfig, resume: bool = False) -> Run:
    """Device and processes, data lists, models, optimisers, precision; a resumed run's state from last.pt."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = _init_distributed(cfg) if world > 1 else resolve_device(cfg.run.device)
    if device.type == "cpu":
        tune_cpu_allocator()  # activations reused from the heap, not faulted in anew (inference/allocator.py)
    if cfg.optim.batch_size % world:
        raise ValueError(f"batch size {cfg.optim.batch_size} is not divisible by {world} processes")
    if cfg.run.deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    _seed_everything(cfg.run.seed)

    run_dir = Path(cfg.run.out)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume and (run_dir / "last.pt").exists():
            raise FileExistsError(f"{run_dir} already holds a run; use --resume or another --out")
    train_files, val_files = _file_lists(cfg, run_dir, rank == 0)
    val_pairs = [load_pair(p) for p in val_files] if rank == 0 else []

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
    amp_dtype = _amp_dtype(cfg.optim.amp, device)
    run = Run(
        cfg=cfg, device=device, rank=rank, world=world, run_dir=run_dir, train_files=train_files,
        val_files=val_files, val_pairs=val_pairs, generator=generator, discriminator=discriminator,
        g_train=generator, d_train=discriminator, ema=ema, opt_g=opt_g, opt_d=opt_d,
        sched_g=_scheduler(opt_g, cfg, total_steps),
        sched_d=_scheduler(opt_d, cfg, cfg.run.steps_gan),  # the discriminator trains in the adversarial phase only
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        perceptual=PerceptualLoss().to(device) if cfg.loss.perceptual_weight > 0 else None,
        amp_dtype=amp_dtype, memory_format=memory_format, init_metadata=init_metadata, total_steps=total_steps,
    )
    if resume:
        _restore(run, torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True))
    if run.distributed:
        ids = [device.index] if device.type == "cuda" else None
        run.g_train, run.d_train = DDP(generator, device_ids=ids), DDP(discriminator, device_ids=ids)
    return run


def _init_distributed(cfg: TrainConfig) -> torch.device:
    local = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = torch.cuda.is_available() and cfg.run.device != "cpu"
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return torch.device("cuda", local) if use_cuda else torch.device("cpu")


def _file_lists(cfg: TrainConfig, run_dir: Path, main_process: bool) -> tuple[list, list]:
    """Training and validation files (from a split file, a patient split made here, or two folders); rank 0
    records them, and the resolved configuration, in the run directory."""
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
    return train_files, val_files


def _restore(run: Run, ckpt: dict) -> None:
    """A resumed run's models, optimisers, schedules, EMA, progress and random states from last.pt."""
    run.generator.load_state_dict(ckpt["generator"])
    run.discriminator.load_state_dict(ckpt["discriminator"])
    run.opt_g.load_state_dict(ckpt["opt_g"])
    run.opt_d.load_state_dict(ckpt["opt_d"])
    run.sched_g.load_state_dict(ckpt["sched_g"])
    run.sched_d.load_state_dict(ckpt["sched_d"])
    run.scaler.load_state_dict(ckpt["scaler"])
    if run.ema is not None:
        run.ema.load_state_dict(ckpt["ema"])
    run.step, run.best_psnr, run.history = ckpt["step"], ckpt["best_psnr"], ckpt["history"]
    # the compute record of the weights the run started from, as they were then: a shipped name such as
    # cxr-fidelity may name a newer file by now
    run.init_metadata = ckpt.get("init_metadata", run.init_metadata)
    run.seconds_before = ckpt.get("train_seconds", 0.0)
    # checkpoints from before CPU time was recorded: their wall time times the threads
    run.cpu_before = ckpt.get("cpu_seconds", run.seconds_before * ckpt.get("threads", 1))
    _set_rng_state(ckpt["rng"])


def _loader(run: Run) -> DataLoader:
    """The training samples, endless and reproducible from the run's step (data/dataset.py)."""
    cfg = run.cfg
    per_rank_batch = cfg.optim.batch_size // run.world
    dataset = PatchDataset(run.train_files, cfg.data.hr_size, run.generator.config.scale, cfg.augment,
                           cfg.data.cache, cfg.data.cache_gb)
    t_preload = time.perf_counter()
    cached = dataset.preload()
    log.info("cached %d of %d training images (%.2f GiB) in %.1f s", cached, len(dataset),
             dataset.cache_bytes / 2**30, time.perf_counter() - t_preload)
    sampler = StepSampler(len(dataset), per_rank_batch, cfg.run.seed, start_step=run.step, rank=run.rank,
                          world_size=run.world)
    return DataLoader(dataset, batch_size=per_rank_batch, sampler=sampler, num_workers=cfg.data.workers,
                      pin_memory=run.device.type == "cuda", persistent_workers=cfg.data.workers > 0,
                      prefetch_factor=4 if cfg.data.workers > 0 else None)


# ----------------------------------------------------------------------------------------------- one step


def train_step(run: Run, lr_img: torch.Tensor, hr_img: torch.Tensor) -> dict[str, torch.Tensor]:
    """One optimisation step: the generator's, then in the adversarial phase the discriminator's; schedules
    and EMA follow. Returns the step's losses (tensors, for logging)."""
    cfg, device = run.cfg, run.device
    adversarial = run.step >= cfg.run.steps_pretrain and cfg.loss.adversarial_weight > 0
    lr_img = lr_img.to(device, non_blocking=True).expand(-1, 3, -1, -1).contiguous(memory_format=run.memory_format)
    hr_img = hr_img.to(device, non_blocking=True).expand(-1, 3, -1, -1).contiguous(memory_format=run.memory_format)
    run.g_train.train()
    run.d_train.train()
    if cfg.optim.freeze_bn:
        for module in run.generator.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
    losses, sr = generator_step(run, lr_img, hr_img, adversarial)
    losses["loss/discriminator"] = (discriminator_step(run, hr_img, sr) if adversarial
                                    else torch.zeros((), device=device))
    run.scaler.update()
    if run.per_step_schedule:
        run.sched_g.step()
        if adversarial:
            run.sched_d.step()
    if run.ema is not None:
        run.ema.update_parameters(run.generator)
    run.step += 1
    return losses


def _autocast(run: Run):
    return torch.autocast(run.device.type, dtype=run.amp_dtype) if run.amp_dtype else nullcontext()


def generator_step(run: Run, lr_img: torch.Tensor, hr_img: torch.Tensor,
                   adversarial: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Pixel, perceptual and TV losses, plus D's verdict in the adversarial phase; backward and step."""
    loss_cfg, device = run.cfg.loss, run.device
    with _autocast(run):
        sr = run.g_train(lr_img)
        loss_pix = pixel_loss(loss_cfg.pixel, sr, hr_img)
        loss_g = loss_cfg.pixel_weight * loss_pix
        loss_perc = run.perceptual(sr, hr_img) if run.perceptual is not None else torch.zeros((), device=device)
        loss_g = loss_g + loss_cfg.perceptual_weight * loss_perc
        if loss_cfg.tv_weight > 0:
            loss_g = loss_g + loss_cfg.tv_weight * total_variation(sr.float())
        loss_adv = torch.zeros((), device=device)
        if adversarial:
            # real and fake through D together, so its BatchNorm sees the same mixture as in the D step
            logits = run.d_train(torch.cat([hr_img, sr]))
            loss_adv = generator_adversarial(logits[hr_img.shape[0]:])
            loss_g = loss_g + loss_cfg.adversarial_weight * loss_adv
    _backward_and_step(loss_g, run.opt_g, run.scaler, run.generator, run.cfg.optim.grad_clip)
    return {"loss/generator": loss_g, "loss/pixel": loss_pix, "loss/perceptual": loss_perc,
            "loss/adversarial": loss_adv}, sr


def discriminator_step(run: Run, hr_img: torch.Tensor, sr: torch.Tensor) -> torch.Tensor:
    """The adversarial phase's discriminator update on real HR and the generator's (detached) output."""
    with _autocast(run):
        logits = run.d_train(torch.cat([hr_img, sr.detach()]))
        n = hr_img.shape[0]
        loss_d = discriminator_loss(logits[:n], logits[n:])
    _backward_and_step(loss_d, run.opt_d, run.scaler, run.discriminator, run.cfg.optim.grad_clip)
    return loss_d


# ------------------------------------------------------------------------------- validation and checkpoints


def periodic_validation_and_checkpoint(run: Run) -> None:
    """Every ``val_every`` steps (and at the last): score the EMA (or raw) generator, feed the plateau
    schedule, keep best.pt; every ``ckpt_every`` steps (and at the last): last.pt."""
    cfg = run.cfg
    if run.step % cfg.run.val_every == 0 or run.step == run.total_steps:
        psnr_val = validate(run, run.ema.module if run.ema is not None else run.generator)
        if run.val_files:
            if not run.per_step_schedule:
                run.sched_g.step(psnr_val)
                run.sched_d.step(psnr_val)
            run.history.append({"step": run.step, "val_psnr": psnr_val, "lr_g": run.opt_g.param_groups[0]["lr"],
                                "elapsed_s": time.perf_counter() - run.t0})
            if psnr_val > run.best_psnr:
                run.best_psnr = psnr_val
                save_checkpoint(run, run.run_dir / "best.pt")
    if run.step % cfg.run.ckpt_every == 0 or run.step == run.total_steps:
        save_checkpoint(run, run.run_dir / "last.pt")


def validate(run: Run, model: Generator) -> float:
    """Validation PSNR at the current step, scored on rank 0 and shared with every rank."""
    psnr_val = (_validate(model, run.val_pairs, run.device, run.writer, run.run_dir, run.step)
                if run.main_process else 0.0)
    if run.distributed:
        shared = torch.tensor([psnr_val], device=run.device)
        dist.broadcast(shared, 0)
        psnr_val = float(shared.item())
    return psnr_val


def save_checkpoint(run: Run, path: Path) -> None:
    """Everything a resumed run needs, written under a temporary name and renamed (rank 0 only)."""
    if not run.main_process:
        return
    state = {
        "generator": run.generator.state_dict(), "discriminator": run.discriminator.state_dict(),
        "opt_g": run.opt_g.state_dict(), "opt_d": run.opt_d.state_dict(),
        "sched_g": run.sched_g.state_dict(), "sched_d": run.sched_d.state_dict(), "scaler": run.scaler.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "step": run.step, "best_psnr": run.best_psnr, "history": run.history, "rng": _get_rng_state(),
        "config": run.cfg.to_dict(), "generator_config": run.generator.config.to_dict(),
        "train_seconds": run.seconds_before + time.perf_counter() - run.t0, "threads": torch.get_num_threads(),
        "cpu_seconds": run.cpu_seconds(),
        "device_type": run.device.type, "init_metadata": run.init_metadata,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _agree_across_ranks(run: Run) -> None:
    """Every rank must end with the same weights; rank 0 records the evidence."""
    # Parameters agree through the gradient all-reduce; BatchNorm running statistics are updated from each
    # rank's own batch after DDP's per-forward broadcast, so take rank 0's (the saved ones).
    for module in (run.generator, run.discriminator):
        for buffer in module.buffers():
            dist.broadcast(buffer, 0)
    digests: list[str] = [""] * run.world
    dist.all_gather_object(digests, _weights_digest(run.generator))
    if run.main_process:
        _log_scalars(None, run.run_dir, run.step, {"ranks_generator_sha256": digests})
    if len(set(digests)) != 1:
        raise RuntimeError(f"generator weights differ between ranks at step {run.step}")


def export_generator(run: str | Path, out: str | Path, use_ema: bool = True, checkpoint: str = "best.pt",
                     blend_with: str | Path | None = None, blend: float = 1.0, **metadata) -> Path:
    """Write a run's generator (EMA weights by default) as a cxrsr safetensors file.

    With ``blend_with`` (a weights file or shipped name of the same architecture, normally the weights the run
    started from), the file holds ``blend * run + (1 - blend) * blend_with``, tensor by tensor: interpolating a
    fine-tune towards its start keeps part of its gain where it was trained and gives back less elsewhere
    (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022). The mixture is recorded in the
    metadata (``blend``), and ``val_psnr`` is the blend's own score on the run's validation images (none when
    they cannot be read); the compute recorded is the run's, which includes its start's."""
    if not 0.0 < blend <= 1.0:
        raise ValueError(f"blend must be in (0, 1], got {blend}")
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
    if blend_with is not None:
        other = resolve_weights(blend_with)
        digest = hashlib.sha256(Path(other).read_bytes()).hexdigest()  # read before ``out`` may replace it
        _blend_into(generator, other, blend)
        meta["blend"] = json.dumps({"run": blend, "with": Path(str(blend_with)).name,
                                    "with_weight": round(1 - blend, 6), "with_sha256": digest}, separators=(",", ":"))
        scored = [_blend_val_psnr(generator, run)]  # the run's own score is not the blend's
    else:
        # the validation score of the exported weights themselves: the entry at this checkpoint's step (best.pt
        # is saved right after its validation; last.pt has one when the run ended on a validation step)
        scored = [h["val_psnr"] for h in ckpt.get("history") or [] if h["step"] == ckpt["step"]]
    if scored and scored[-1] is not None and math.isfinite(scored[-1]):
        meta["val_psnr"] = f"{scored[-1]:.4f}"
    # compute counts every step the run took, also those after the checkpoint whose weights are exported
    last = ckpt
    if path.name != "last.pt" and (run / "last.pt").exists():
        last = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    meta.update(training_compute(last, run.name))
    meta.update(metadata)
    return save_generator(generator, out, **meta)


def _blend_into(generator: Generator, other: Path, blend: float) -> None:
    """generator <- blend * generator + (1 - blend) * other (a weights file), for every floating-point tensor."""
    theirs, _ = load_generator(other)
    if theirs.config != generator.config:
        raise ValueError(f"{other}: cannot blend a {theirs.config} generator with a {generator.config} one")
    mine, ref = generator.state_dict(), theirs.state_dict()
    generator.load_state_dict({k: torch.lerp(ref[k], v, blend) if v.is_floating_point() else v
                               for k, v in mine.items()})


def _blend_val_psnr(generator: Generator, run: Path) -> float | None:
    """Mean PSNR on the validation images the run recorded in its split.json, scored as in training."""
    split = run / "split.json"
    files = read_split(split).get("val", []) if split.exists() else []
    try:
        pairs = [load_pair(p) for p in files]
    except Exception as exc:  # noqa: BLE001 - moved or unreadable images: the blend is written without a score
        log.warning("the blend is not scored on the run's validation images: %s", exc)
        return None
    if not pairs:
        return None
    with torch.no_grad():
        scores = score_pairs(pairs, _grey_sr(generator.eval(), torch.device("cpu")))
    return float(np.mean([s.psnr for s in scores]))


def _grey_sr(model: Generator, device: torch.device):
    """The generator as a grey [0, 1] float64 -> float64 function, as validation scores it."""
    def sr(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(lr.astype(np.float32))[None, None].to(device).expand(1, 3, -1, -1)
        return model(x).float().mean(1)[0].cpu().numpy().astype(np.float64)
    return sr


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
    sr = _grey_sr(model, device)
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
