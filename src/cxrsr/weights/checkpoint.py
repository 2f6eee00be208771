"""Reading generator weights safely (safetensors or ``torch.load(weights_only=True)``) and writing safetensors."""

from __future__ import annotations

import pickle
import warnings
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
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: weights file is empty (0 bytes)")
    metadata: dict[str, str] = {}
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                metadata = dict(f.metadata() or {})
            state = load_file(str(path))
        else:
            with warnings.catch_warnings():  # torch warns about e.g. pickle protocol 4; failures raise below
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsError(f"{path}: cannot read weights: not a PyTorch checkpoint that loads with "
                           "weights_only=True (tensors only; arbitrary pickled code is refused)") from None
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read weights ({type(exc).__name__}: {_one_line(exc)})") from None
    for _ in range(2):
        if isinstance(state, dict):
            inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), dict)), None)
            if inner is not None and not any(isinstance(v, torch.Tensor) for v in state.values()):
                state = inner
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise WeightsError(f"{path}: no tensor state dict found")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return state, metadata


def load_generator(path: str | Path) -> tuple[Generator, dict[str, str]]:
    """Build a generator whose configuration is read from the weights, and load them strictly.

    Every problem with the file (unreadable, another architecture, wrong shapes or dtypes, NaN or infinite
    values) is raised as a one-line ``WeightsError`` that starts with the path.
    """
    state, metadata = load_state_dict(path)
    _check_values(path, state)
    try:
        _check_block_indices(state)
        config = GeneratorConfig.from_state_dict(state)
        _check_layout(state, config)
        model = Generator(config)
        model.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{path}: not a Swift-SRGAN generator ({_one_line(exc)})") from None
    return model.eval(), metadata


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _check_values(path: str | Path, state: dict[str, torch.Tensor]) -> None:
    """Refuse tensors that are not plain dense CPU tensors, and floating-point tensors with NaN or Inf."""
    for key, tensor in state.items():
        if tensor.layout != torch.strided or tensor.is_nested or tensor.is_quantized or tensor.device.type != "cpu":
            raise WeightsError(f"{path}: tensor {key!r} is not a plain dense tensor")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise WeightsError(f"{path}: weights contain NaN or infinite values (tensor {key!r})")


def _check_block_indices(state: dict[str, torch.Tensor]) -> None:
    """Block counts are read from key indices; refuse indices no file of this size can hold before a
    model (and ``2 ** upsample_blocks``) is sized from them."""
    for key in state:
        head, _, rest = key.partition(".")
        index = rest.partition(".")[0]
        if head in ("residual", "upsampler") and index.isdecimal() and int(index) >= len(state):
            raise ValueError(f"key {key!r} has a block index larger than the number of tensors")


def _check_layout(state: dict[str, torch.Tensor], config: GeneratorConfig) -> None:
    """Compare names, shapes and dtypes with a generator built on the meta device (which allocates nothing)."""
    with torch.device("meta"):
        expected = Generator(config).state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what = f"missing tensor {missing[0]!r}" if missing else f"unexpected tensor {unexpected[0]!r}"
        raise ValueError(f"{what}; {len(missing)} missing, {len(unexpected)} unexpected")
    for key, want in expected.items():
        got = state[key]
        if got.shape != want.shape:
            raise ValueError(f"tensor {key!r} has shape {list(got.shape)}, expected {list(want.shape)}")
        if want.is_floating_point() and not got.is_floating_point():
            raise ValueError(f"tensor {key!r} has dtype {got.dtype}, expected a floating-point dtype")


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
