"""Inference-only rewrites of the generator that compute the same function faster.

BatchNorm folding: in eval mode a BatchNorm after a convolution is a per-channel affine map, so it can be
merged into the convolution's weights and bias (the pointwise convolution of each separable block here).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..models import Generator
from ..models.layers import ConvBlock


@torch.no_grad()
def fold_batchnorm(model: Generator) -> Generator:
    """A copy of ``model`` with every BatchNorm merged into the pointwise convolution before it (eval only)."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, ConvBlock) and isinstance(module.bn, nn.BatchNorm2d):
            conv, bn = module.cnn.pointwise, module.bn
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = bn.bias - bn.running_mean * scale
            if conv.bias is not None:
                bias = bias + conv.bias * scale
            new = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=True).to(conv.weight.device, conv.weight.dtype)
            new.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            new.bias.copy_(bias)
            module.cnn.pointwise = new
            module.bn = nn.Identity()
    return folded
