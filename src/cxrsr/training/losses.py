"""Losses of the fine-tuning recipe.

Upstream Swift-SRGAN's generator loss is MSE(pixels) + 0.006 * MSE(MobileNetV2 features)
+ 0.001 * adversarial + 2e-8 * total variation; those are the defaults of :class:`LossConfig`. The adversarial
terms use binary cross-entropy on logits (the seed paper's "BCE-style" D loss), which is safe under mixed
precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
MOBILENET_FILE = "mobilenet_v2-b0353104.pth"


@dataclass
class LossConfig:
    pixel: str = "mse"  # "mse" or "l1"
    pixel_weight: float = 1.0
    perceptual_weight: float = 0.006
    adversarial_weight: float = 0.001
    tv_weight: float = 2e-8


class PerceptualLoss(nn.Module):
    """MSE between ImageNet MobileNetV2 ``.features`` of SR and HR (inputs in [0, 1], ImageNet-normalised)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = load_mobilenet_features().eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        self.features.eval()  # BatchNorm statistics stay ImageNet's
        return self

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        sr, hr = _rgb(sr), _rgb(hr)
        f_sr = self.features((sr - self.mean) / self.std)
        with torch.no_grad():
            f_hr = self.features((hr - self.mean) / self.std)
        return F.mse_loss(f_sr.float(), f_hr.float())


def load_mobilenet_features() -> nn.Module:
    """torchvision's ImageNet MobileNetV2 features. Offline, the file must already be in torch's hub cache."""
    try:
        from torchvision.models import MobileNet_V2_Weights, mobilenet_v2
    except ImportError:
        raise RuntimeError("the perceptual loss needs torchvision: pip install 'cxrsr[train]'") from None
    try:
        return mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1).features
    except Exception as exc:  # no network and no cached file
        where = f"{torch.hub.get_dir()}/checkpoints/{MOBILENET_FILE}"
        raise RuntimeError(
            f"ImageNet MobileNetV2 weights for the perceptual loss are missing: put {MOBILENET_FILE} at {where} "
            f"(or set TORCH_HOME to a folder holding hub/checkpoints/{MOBILENET_FILE}), or set "
            f"perceptual_weight = 0 ({type(exc).__name__})"
        ) from None


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """SRGAN's TV loss: 2 * (mean squared vertical + mean squared horizontal difference) / batch size."""
    n = x.shape[0]
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).sum() / max(1, x[:, :, 1:, :].numel() // n)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).sum() / max(1, x[:, :, :, 1:].numel() // n)
    return 2 * (dh + dw) / n


def pixel_loss(kind: str, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    if kind == "mse":
        return F.mse_loss(sr.float(), hr.float())
    if kind == "l1":
        return F.l1_loss(sr.float(), hr.float())
    raise ValueError(f"pixel loss must be 'mse' or 'l1', got {kind!r}")


def generator_adversarial(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(fake_logits.float(), torch.ones_like(fake_logits, dtype=torch.float32))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    real = F.binary_cross_entropy_with_logits(real_logits.float(), torch.ones_like(real_logits, dtype=torch.float32))
    fake = F.binary_cross_entropy_with_logits(fake_logits.float(), torch.zeros_like(fake_logits, dtype=torch.float32))
    return real + fake


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
