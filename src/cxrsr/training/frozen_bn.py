"""BatchNorm folded into the convolution before it while its statistics are frozen, for training.

With ``optim.freeze_bn`` the generator's BatchNorm layers run in eval mode: each is a per-channel affine map
``y = (x - mean) * gamma / sqrt(var + eps) + beta``. Applied as a separate layer it costs two passes over an
activation forward and two backward per block. Folded, the pointwise convolution's weight is scaled per output
channel and the shift becomes its bias, so oneDNN applies it inside the convolution; only weight-sized tensors
are added to the graph. The parameters stay the same tensors (the pointwise weight, gamma and beta), so the
optimiser sees the same parameters and gradients (to float32 rounding) and checkpoints are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import ConvBlock, SeparableConv2d


class FoldedBNConvBlock(ConvBlock):
    """A :class:`ConvBlock` that folds its BatchNorm into the pointwise convolution whenever the BatchNorm is
    in eval mode; in training mode it is the plain block."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        if bn.training or not isinstance(bn, nn.BatchNorm2d) or not isinstance(self.cnn, SeparableConv2d):
            return super().forward(x)
        pointwise = self.cnn.pointwise
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        if pointwise.bias is not None:
            shift = shift + pointwise.bias * scale
        x = F.conv2d(self.cnn.depthwise(x), pointwise.weight * scale.view(-1, 1, 1, 1), shift)
        return self.act(x) if self.use_act else x


def fold_frozen_batchnorm(model: nn.Module) -> int:
    """Switch every :class:`ConvBlock` with a BatchNorm to :class:`FoldedBNConvBlock` in place; returns how many.
    State-dict keys and parameters are unchanged."""
    switched = 0
    for m in model.modules():
        if type(m) is ConvBlock and isinstance(m.bn, nn.BatchNorm2d):
            m.__class__ = FoldedBNConvBlock
            switched += 1
    return switched
