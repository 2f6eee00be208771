"""Building blocks shared by the Swift-SRGAN generator and discriminator.

Attribute names (``cnn``, ``depthwise``, ``pointwise``, ``bn``, ``act``, ``conv``) follow the upstream
Swift-SRGAN code so that state dicts load both ways (upstream checkpoints, spandrel, chaiNNer).
"""

from __future__ import annotations

import torch
from torch import nn


class SeparableConv2d(nn.Module):
    """Depthwise k x k convolution (one filter per channel) followed by a 1 x 1 pointwise convolution."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=in_channels,
            bias=bias,
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ConvBlock(nn.Module):
    """Separable convolution, optional BatchNorm, optional activation.

    The convolution has a bias only where no BatchNorm follows. Upstream always creates the activation
    module, also where it is not applied (``use_act=False``); we keep it so checkpoints load strictly and
    the parameter count matches upstream (201,209 at 4x).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        use_bn: bool = True,
        use_act: bool = True,
        leaky: bool = False,
    ) -> None:
        super().__init__()
        self.use_act = use_act
        self.cnn = SeparableConv2d(in_channels, out_channels, kernel_size, stride=stride, bias=not use_bn)
        self.bn = nn.BatchNorm2d(out_channels) if use_bn else nn.Identity()
        self.act: nn.Module = nn.LeakyReLU(0.2, inplace=True) if leaky else nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.cnn(x))
        return self.act(x) if self.use_act else x


class ResidualBlock(nn.Module):
    """Two 3 x 3 separable ConvBlocks (the second without activation) plus an identity skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block1 = ConvBlock(channels, channels)
        self.block2 = ConvBlock(channels, channels, use_act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block2(self.block1(x))


class UpsampleBlock(nn.Module):
    """2x upsampling: separable 3 x 3 convolution to 4C channels, PixelShuffle(2), PReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = SeparableConv2d(channels, channels * 4, 3)
        self.ps = nn.PixelShuffle(2)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.ps(self.conv(x)))
