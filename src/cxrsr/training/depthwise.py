"""A faster backward pass for depthwise convolutions on the CPU, for training.

PyTorch's CPU backward of a depthwise (groups = channels) convolution computes the weight gradient with a slow
generic kernel: for the generator's final 9x9 depthwise convolution at 128x128 (64 channels, batch 8) it takes
about 130 ms of a 350 ms training step, against 11 ms for the forward pass. Both gradients have exact
formulations as ordinary forward convolutions, which oneDNN runs fast:

- input gradient: the output gradient convolved depthwise with the kernel rotated by 180 degrees (for stride
  1 and "same" padding ``k // 2`` with an odd ``k``);
- weight gradient: ONE grouped convolution in which the zero-padded input, viewed as a single image of
  ``B * C`` channels, is correlated with the output gradient, viewed as ``B * C`` kernels of size H x W
  (groups = ``B * C``); the ``k x k`` result per (sample, channel) is summed over the batch.

Both agree with autograd to float32 rounding (tests/test_training_speed.py). Which layers gain is measured by
``python benchmarks/train_step_cpu.py --layers``: the weight-gradient formulation pays where the kernel is large
(it is a correlation with an H x W kernel), so :func:`use_fast_depthwise` converts layers with a kernel of at
least ``min_kernel`` and at least ``min_channels`` channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
        # under autocast the input may arrive in bf16/fp16 while the parameters stay fp32 (master weights)
        w = weight.to(x.dtype)
        ctx.save_for_backward(x, w)
        ctx.padding, ctx.has_bias, ctx.param_dtype, ctx.input_dtype = padding, bias is not None, weight.dtype, x.dtype
        return F.conv2d(x, w, None if bias is None else bias.to(x.dtype), padding=padding, groups=weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        p, channels = ctx.padding, weight.shape[0]
        # computed in the precision of the incoming gradient (bf16 under autocast), returned in the parameters'
        x, weight = x.to(grad_out.dtype), weight.to(grad_out.dtype)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad_out, weight.flip(-1, -2), padding=p, groups=channels).to(ctx.input_dtype)
        if ctx.needs_input_grad[1]:
            b, c, h, w = grad_out.shape
            # as one image of B*C channels, NCHW-contiguous so that the views below are free
            image = F.pad(x, (p, p, p, p)).contiguous().view(1, b * c, h + 2 * p, w + 2 * p)
            kernels = grad_out.contiguous().view(b * c, 1, h, w)
            grad_w = F.conv2d(image, kernels, groups=b * c).view(b, c, *weight.shape[-2:]).sum(0, keepdim=True)
            grad_w = grad_w.transpose(0, 1).reshape(weight.shape).to(ctx.param_dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3), dtype=ctx.param_dtype)
        return grad_x, grad_w, grad_b, None


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     padding: int | None = None) -> torch.Tensor:
    """Depthwise convolution, stride 1, "same" padding, with the faster backward described above."""
    k = weight.shape[-1]
    return _DepthwiseConv.apply(x, weight, bias, k // 2 if padding is None else padding)


class FastDepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` (same parameters and state-dict keys) whose backward uses the faster
    formulation; made by :func:`use_fast_depthwise`, which switches the class of existing layers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv2d(x, self.weight, self.bias, self.padding[0])


def eligible(m: nn.Module) -> bool:
    """A depthwise convolution that the faster backward handles exactly: stride 1, no dilation, odd square
    kernel, "same" zero padding."""
    if type(m) is not nn.Conv2d:
        return False
    k = m.kernel_size[0]
    return (m.groups == m.in_channels == m.out_channels and m.kernel_size == (k, k) and k % 2 == 1
            and m.stride == (1, 1) and m.dilation == (1, 1) and m.padding == (k // 2, k // 2)
            and m.padding_mode == "zeros")


def use_fast_depthwise(model: nn.Module, min_kernel: int = 9, min_channels: int = 16) -> int:
    """Switch every eligible depthwise convolution with a kernel of at least ``min_kernel`` and at least
    ``min_channels`` channels (the generator's final 9x9 layer, not its 3-channel first one) to
    :class:`FastDepthwiseConv2d` in place; returns how many were switched. Parameters, state-dict keys and the
    forward function are unchanged."""
    switched = 0
    for m in model.modules():
        if eligible(m) and m.kernel_size[0] >= min_kernel and m.in_channels >= min_channels:
            m.__class__ = FastDepthwiseConv2d
            switched += 1
    return switched


def restore_depthwise(model: nn.Module) -> None:
    """Undo :func:`use_fast_depthwise` (plain ``nn.Conv2d`` again, e.g. before exporting or tracing)."""
    for m in model.modules():
        if type(m) is FastDepthwiseConv2d:
            m.__class__ = nn.Conv2d
