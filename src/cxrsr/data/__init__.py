"""Training data: datasets, patient splits, the protocol's LR degradation, augmentations."""

from .augment import AugmentConfig, random_patch
from .dataset import PatchDataset, StepSampler
from .degrade import bicubic_upscale, make_lr
from .splits import list_image_files, patient_ids, read_split, split_by_patient, write_split

__all__ = ["AugmentConfig", "PatchDataset", "StepSampler", "bicubic_upscale", "list_image_files", "make_lr",
           "patient_ids", "random_patch", "read_split", "split_by_patient", "write_split"]
