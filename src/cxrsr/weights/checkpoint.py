"""Reading generator weights safely (safetensors or ``torch.load(weights_only=True)``) and writing safetensors."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..io.atomic import atomic_path
from ..models import Generator, GeneratorConfig

FORMAT = "cxrsr.swift_srgan.generator"
_WRAPPER_KEYS = ("model", "state_dict", "params_ema", "params", "generator", "gen")


class WeightsError(Exception):
    """A weights file is missing, unreadable or not a Swift-SRGAN generator."""


def load_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return ``(state_dict, metadata)`` from a .safetensors file or a .pth / .pth.tar / .pt checkpoint.

    Pickled checkpoints are read with ``weights_only=True``: no code in the file is executed. The
    upstream layout ``{"model": state_dict}`` and a ``module.`` prefix (DataParallel) are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    metadata: dict[str, str] = {}
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                metadata = dict(f.metadata() or {})
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsError(f"{path}: cannot read weights: not a PyTorch checkpoint that loads with "
                           "weights_only=True (tensors only; arbitrary pickled code is refused)") from None
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read weights ({type(exc).__name__}: {str(exc)[:200]})") from None
    for _ in range(2):
        if isinstance(state, dict):
            inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), dict)), None)
            if inner is not None and not any(isinstance(v, torch.Tensor) for v in state.values()):
                state = inner
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: no tensor state dict found")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return state, metadata


def load_generator(path: str | Path) -> tuple[Generator, dict[str, str]]:
    """Build a generator whose configuration is read from the weights, and load them strictly."""
    state, metadata = load_state_dict(path)
    try:
        config = GeneratorConfig.from_state_dict(state)
        model = Generator(config)
        model.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path}: not a Swift-SRGAN generator ({str(exc).splitlines()[0][:200]})") from None
    return model.eval(), metadata


def save_generator(model: Generator, path: str | Path, **metadata: str | int | float) -> Path:
    """Write the generator as safetensors with its configuration and ``metadata`` (all stored as strings).

    The file loads in cxrsr and in spandrel (same key names as upstream Swift-SRGAN).
    """
    from .. import __version__

    path = Path(path)
    meta = {"format": FORMAT, "cxrsr_version": __version__}
    meta.update({k: str(v) for k, v in model.config.to_dict().items()})
    meta.update({k: str(v) for k, v in metadata.items()})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def convert_checkpoint(src: str | Path, dst: str | Path, source: str | None = None) -> Path:
    """Turn an upstream .pth / .pth.tar checkpoint into a cxrsr safetensors file with metadata."""
    model, _ = load_generator(src)
    return save_generator(model, dst, source=source or Path(src).name)
