"""Training configuration: one dataclass per concern, read from TOML or JSON, overridable from the CLI.

The run directory records the resolved configuration as config.json.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.augment import AugmentConfig
from .losses import LossConfig


@dataclass
class DataConfig:
    train: str = ""  # folder or list file of training images
    val: str = ""  # folder or list file of validation images (whole images, protocol pairs)
    split_file: str = ""  # optional JSON split file ({"train": [...], "val": [...]}) instead of train/val
    images: str = ""  # or one folder / list file, split by patient into train / val / test here
    patient_regex: str = r"^(\d+)_\d+"  # patient id from the file name (NIH: PATIENT_FOLLOWUP.png)
    patient_csv: str = ""  # or a CSV with columns image, patient_id
    split_fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)
    split_seed: int = 0
    hr_size: int = 256  # HR patch side; 0 = whole images
    workers: int = 4
    cache: bool = True  # decode images once, before training, and keep them in memory
    cache_gb: float = 4.0  # that cache's budget per training process (its loader workers share it)
    val_max_images: int = 0  # 0 = all


@dataclass
class OptimConfig:
    batch_size: int = 32  # per step over all processes
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-2
    grad_clip: float = 0.0  # 0 = off
    ema_decay: float = 0.999  # 0 = no EMA
    # Learning-rate schedule: "plateau" (ReduceLROnPlateau on validation PSNR, the seed paper's) or "cosine"
    # (from lr to lr_min over the run's steps, a decay that is sure to happen: in a 4500-step CPU fine-tune the
    # plateau schedule never fired, benchmarks/RESULTS.md) or "constant" (lr throughout, after the warm-up).
    schedule: str = "plateau"
    lr_min: float = 1e-6  # cosine's final learning rate
    # Linear warm-up of the learning rate over the first steps (cosine schedule): a stretch started from trained
    # weights with fresh AdamW moments otherwise takes full-size first steps that undo part of the training.
    warmup_steps: int = 0
    plateau_factor: float = 0.5
    plateau_patience: int = 4  # validations without improvement before the learning rate drops
    amp: str = "auto"  # auto (bf16 where supported, else fp16 + GradScaler on CUDA; off on CPU) | bf16 | fp16 | off
    freeze_bn: bool = False  # keep the generator's BatchNorm statistics fixed (small batches, short fine-tunes)


@dataclass
class RunConfig:
    out: str = "runs/cxr"
    seed: int = 0
    steps_pretrain: int = 1000  # phase 1: generator only (pixel + perceptual + TV)
    steps_gan: int = 0  # phase 2: adversarial fine-tuning
    # Stop the run once its training process has used this many CPU seconds (over all stretches of the run,
    # validation included, the image preload not), then validate and checkpoint as at the last step: runs
    # compared at equal CPU time. 0 = no limit; the step counts above still end the run if reached first.
    cpu_budget_s: float = 0.0
    val_every: int = 200
    ckpt_every: int = 200
    log_every: int = 20
    init: str = ""  # generator weights to start from (e.g. the upstream 4x checkpoint)
    device: str = "auto"
    channels_last: bool = True  # NHWC activations: oneDNN's faster depthwise kernels (benchmarks/RESULTS.md)
    fast_depthwise: bool = True  # on the CPU: faster backward of the large depthwise convolution (training/depthwise.py)
    fold_frozen_bn: bool = True  # with optim.freeze_bn: BatchNorm applied inside the convolution (training/frozen_bn.py)
    validate_init: bool = True  # score the initial weights first, so a new stretch only keeps what improves
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TrainConfig":
        cfg = cls()
        for section, values in raw.items():
            if not hasattr(cfg, section):
                raise ValueError(f"unknown config section [{section}]")
            for key, value in values.items():
                set_value(cfg, f"{section}.{key}", value)
        return cfg


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read TOML (.toml) or JSON, then apply ``section.key=value`` overrides (values parsed as TOML)."""
    cfg = TrainConfig()
    if path:
        path = Path(path)
        raw = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
        cfg = TrainConfig.from_dict(raw)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not section.key=value")
        key, text = item.split("=", 1)
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a bare string
        set_value(cfg, key.strip(), value)
    return cfg


def set_value(cfg: TrainConfig, dotted: str, value: Any) -> None:
    section_name, _, key = dotted.partition(".")
    section = getattr(cfg, section_name, None)
    if section is None or not dataclasses.is_dataclass(section) or not key:
        raise ValueError(f"unknown config key {dotted!r}")
    fields = {f.name: f for f in dataclasses.fields(section)}
    if key not in fields:
        raise ValueError(f"unknown config key {dotted!r}; known: {', '.join(sorted(fields))}")
    current = getattr(section, key)
    try:
        if isinstance(current, bool):
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
        elif isinstance(current, float):
            value = float(value)
        elif isinstance(current, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("expected an integer")
            value = int(value)
        elif isinstance(current, tuple):
            if not isinstance(value, (list, tuple)) or len(value) != len(current):
                raise ValueError(f"expected a list of {len(current)} values")
            value = tuple(type(c)(v) for c, v in zip(current, value))
        elif isinstance(current, str):
            value = str(value)
    except (TypeError, ValueError) as exc:
        kind = {"int": "an integer", "float": "a number"}.get(type(current).__name__, type(current).__name__)
        detail = str(exc) if str(exc).startswith("expected") else f"expected {kind}"
        raise ValueError(f"config key {dotted}: {detail}, got {value!r}") from None
    setattr(section, key, value)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
