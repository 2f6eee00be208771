"""Swift-SRGAN (Krishnan & Krishnan, arXiv 2111.14320): depthwise-separable SRGAN generator and discriminator.

The layout and state-dict keys match the upstream release, so its 4x checkpoint loads strictly and weights
saved by cxrsr load in spandrel.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .layers import ConvBlock, ResidualBlock, SeparableConv2d, UpsampleBlock


@dataclass(frozen=True)
class GeneratorConfig:
    """Hyperparameters of the generator. ``scale`` must be a power of two (2, 4 or 8)."""

    scale: int = 4
    in_channels: int = 3
    channels: int = 64
    blocks: int = 16

    def __post_init__(self) -> None:
        if self.scale < 2 or self.scale & (self.scale - 1):
            raise ValueError(f"scale must be a power of two >= 2, got {self.scale}")
        for name in ("in_channels", "channels", "blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def upsample_blocks(self) -> int:
        return int(math.log2(self.scale))

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> "GeneratorConfig":
        """Infer the configuration from the shapes and key names of a generator state dict."""
        try:
            in_channels = state_dict["initial.cnn.depthwise.weight"].shape[0]
            channels = state_dict["initial.cnn.pointwise.weight"].shape[0]
        except KeyError as exc:
            raise ValueError(f"its tensors lack {exc.args[0]}, which every Swift-SRGAN generator has") from None
        blocks = _count_indexed(state_dict, "residual.")
        ups = _count_indexed(state_dict, "upsampler.")
        return cls(scale=2**ups, in_channels=in_channels, channels=channels, blocks=blocks)


def _count_indexed(state_dict: dict[str, torch.Tensor], prefix: str) -> int:
    indices = {int(k[len(prefix) :].split(".")[0]) for k in state_dict if k.startswith(prefix)}
    return max(indices) + 1 if indices else 0


class Generator(nn.Module):
    """Maps an RGB image in [0, 1] of shape (N, C, H, W) to (N, C, scale*H, scale*W) in [0, 1]."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or GeneratorConfig()
        c = config.channels
        self.initial = ConvBlock(config.in_channels, c, kernel_size=9, use_bn=False)
        self.residual = nn.Sequential(*[ResidualBlock(c) for _ in range(config.blocks)])
        self.convblock = ConvBlock(c, c, use_act=False)
        self.upsampler = nn.Sequential(*[UpsampleBlock(c) for _ in range(config.upsample_blocks)])
        self.final_conv = SeparableConv2d(c, config.in_channels, kernel_size=9)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        initial = self.initial(x)
        x = self.convblock(self.residual(initial)) + initial
        x = self.final_conv(self.upsampler(x))
        return (torch.tanh(x) + 1) / 2


@dataclass(frozen=True)
class DiscriminatorConfig:
    in_channels: int = 3
    widths: tuple[int, ...] = (64, 64, 128, 128, 256, 256, 512, 512)
    hidden: int = 1024
    pool: int = 6


class Discriminator(nn.Module):
    """Eight separable 3 x 3 blocks (stride 1, 2, 1, 2, ...; no BatchNorm in the first), LeakyReLU(0.2),
    then AdaptiveAvgPool(6 x 6) -> Linear(hidden) -> LeakyReLU -> Linear(1).

    ``forward`` returns logits; apply ``torch.sigmoid`` for the probability upstream returns. Logits let
    the training loss use the numerically safe ``binary_cross_entropy_with_logits`` under mixed precision.
    """

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DiscriminatorConfig()
        layers = []
        in_ch = config.in_channels
        for i, width in enumerate(config.widths):
            layers.append(ConvBlock(in_ch, width, stride=1 + i % 2, use_bn=i != 0, leaky=True))
            in_ch = width
        self.blocks = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(config.pool),
            nn.Flatten(),
            nn.Linear(in_ch * config.pool * config.pool, config.hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(config.hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.blocks(x))


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
