"""Training: configuration, losses and the loop (the seed paper's fine-tuning recipe)."""

from .config import DataConfig, OptimConfig, RunConfig, TrainConfig, load_config
from .loop import export_generator, train

__all__ = ["DataConfig", "OptimConfig", "RunConfig", "TrainConfig", "export_generator", "load_config", "train"]
