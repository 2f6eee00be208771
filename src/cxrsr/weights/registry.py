"""Named weights shipped inside the package, and resolution of a name or a path to a weights file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .checkpoint import WeightsError

#: The weights used when none are named. Shipped weights live in ``cxrsr/weights/files/<name>.safetensors``.
DEFAULT_WEIGHTS = "cxr-fidelity"


def available_weights() -> list[str]:
    """Names of the weights files shipped in this installation."""
    folder = resources.files(__package__) / "files"
    return sorted(p.name.removesuffix(".safetensors") for p in folder.iterdir() if p.name.endswith(".safetensors"))


def resolve_weights(name_or_path: str | Path | None = None) -> Path:
    """Map a shipped name (``cxr-fidelity``) or a file path to an existing weights file."""
    if name_or_path is None:
        name_or_path = DEFAULT_WEIGHTS
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate
    name = str(name_or_path)
    if name in available_weights():
        return Path(str(resources.files(__package__) / "files" / f"{name}.safetensors"))
    shipped = ", ".join(available_weights()) or "none in this version"
    if candidate.suffix or "/" in name or "\\" in name:
        raise WeightsError(f"{name}: weights file not found")
    raise WeightsError(
        f"unknown weights name {name!r} (shipped: {shipped}); pass a path to a .safetensors or .pth file"
    )
