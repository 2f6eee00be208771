"""Model weights: shipped files, safe loading, conversion of upstream checkpoints to safetensors."""

from .checkpoint import WeightsError, convert_checkpoint, load_generator, load_state_dict, save_generator
from .registry import DEFAULT_WEIGHTS, available_weights, resolve_weights

__all__ = [
    "DEFAULT_WEIGHTS",
    "WeightsError",
    "available_weights",
    "convert_checkpoint",
    "load_generator",
    "load_state_dict",
    "resolve_weights",
    "save_generator",
]
