"""The generator as one fused Triton kernel launch per separable block (kernels.py), for CUDA GPUs.

At 4x with 16 residual blocks that is 37 launches instead of the eager model's 115 operators, and none of the
pre-shuffle 256-channel tensors, PReLU outputs or residual sums are written to memory (benchmarks/roofline.py
counts the traffic). Activations are channels-last in fp16 (or fp32); every accumulation is fp32.

Without a GPU the same kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, slow): that is how
the tests compare this path with the eager reference on the CPU.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import torch
from torch import nn

from ..models import Generator
from ..models.layers import SeparableConv2d
from .optimize import fold_batchnorm


def triton_available(device: torch.device) -> bool:
    """Whether the fused path can run on ``device``: Triton installed, and CUDA or the interpreter."""
    if importlib.util.find_spec("triton") is None:
        return False
    return device.type == "cuda" or (device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")


@dataclass
class _Block:
    """One separable convolution with everything the kernel fuses after it, in the kernel's layouts."""

    dw: torch.Tensor  # (Cin, k*k) fp32
    pw: torch.Tensor  # (Cin, Cout) activation dtype
    bias: torch.Tensor  # (Cout,) fp32: pointwise bias + pointwise(depthwise bias) [+ folded BatchNorm]
    slope: torch.Tensor | None  # (Cout,) fp32 PReLU slopes, per output channel before any shuffle
    k: int
    cin: int
    cout: int
    shuffle: bool = False
    sigmoid2: bool = False  # (tanh(y) + 1) / 2


def _block(sep: SeparableConv2d, act: nn.Module | None, dtype: torch.dtype, device: torch.device,
           shuffle: bool = False, sigmoid2: bool = False) -> _Block:
    dw, pw = sep.depthwise, sep.pointwise
    k, cin, cout = dw.kernel_size[0], dw.in_channels, pw.out_channels
    w_dw = dw.weight.detach().reshape(cin, k * k).double()
    w_pw = pw.weight.detach().reshape(cout, cin).double()
    bias = pw.bias.detach().double() if pw.bias is not None else w_pw.new_zeros(cout)
    if dw.bias is not None:  # pointwise(depthwise(x) + b) = pointwise(depthwise(x)) + W b
        bias = bias + w_pw @ dw.bias.detach().double()
    slope = None
    if act is not None:
        if not isinstance(act, nn.PReLU):
            raise ValueError(f"the fused path supports PReLU activations only, not {type(act).__name__}")
        channels = cout // 4 if shuffle else cout
        slope = act.weight.detach().double().expand(channels)
        if shuffle:  # PReLU after PixelShuffle(2) = PReLU before it, each slope repeated for its 4 sub-pixels
            slope = slope.repeat_interleave(4)
        slope = slope.to(device, torch.float32).contiguous()
    return _Block(
        dw=w_dw.to(device, torch.float32).contiguous(),
        pw=w_pw.t().to(device, dtype).contiguous(),
        bias=bias.to(device, torch.float32).contiguous(),
        slope=slope, k=k, cin=cin, cout=cout, shuffle=shuffle, sigmoid2=sigmoid2,
    )


class FusedGenerator:
    """Callable like the generator: (N, C, H, W) float -> (N, C, sH, sW) float32, computed by fused kernels."""

    def __init__(self, model: Generator, device: torch.device, dtype: torch.dtype = torch.float16,
                 block_w: int = 64) -> None:
        if dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise ValueError(f"unsupported dtype {dtype}")
        if block_w < 16 or block_w & (block_w - 1):
            raise ValueError("block_w must be a power of two >= 16")
        import triton  # imported here, not at module level: the package works without Triton

        from .kernels import separable_block_kernel

        self._triton, self._kernel = triton, separable_block_kernel
        m = fold_batchnorm(model)
        self.device, self.dtype, self.block_w = device, dtype, block_w
        self.initial = _block(m.initial.cnn, m.initial.act, dtype, device)
        self.residual = [(_block(b.block1.cnn, b.block1.act, dtype, device), _block(b.block2.cnn, None, dtype, device))
                         for b in m.residual]
        self.convblock = _block(m.convblock.cnn, None, dtype, device)
        self.upsample = [_block(u.conv, u.act, dtype, device, shuffle=True) for u in m.upsampler]
        self.final = _block(m.final_conv, None, dtype, device, sigmoid2=True)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # NHWC. The input image stays fp32: rounding it is the largest single source of error in reduced
        # precision (benchmarks/bf16_by_layer.py), and with three channels it is a tiny share of the traffic.
        h = x.to(self.device, torch.float32).permute(0, 2, 3, 1).contiguous()
        initial = self._run(self.initial, h)
        h = initial
        for first, second in self.residual:
            h = self._run(second, self._run(first, h), residual=h)
        h = self._run(self.convblock, h, residual=initial)
        for up in self.upsample:
            h = self._run(up, h)
        out = self._run(self.final, h, out_dtype=torch.float32)
        return out.permute(0, 3, 1, 2)

    def _run(self, b: _Block, x: torch.Tensor, residual: torch.Tensor | None = None,
             out_dtype: torch.dtype | None = None) -> torch.Tensor:
        triton = self._triton
        n, h, w, c = x.shape
        assert c == b.cin, (c, b.cin)
        shape = (n, 2 * h, 2 * w, b.cout // 4) if b.shuffle else (n, h, w, b.cout)
        out = torch.empty(shape, device=x.device, dtype=out_dtype or self.dtype)
        cin_p = max(16, triton.next_power_of_2(b.cin))
        cout_p = max(16, triton.next_power_of_2(b.cout))
        block_w = min(self.block_w, max(16, triton.next_power_of_2(w)))
        grid = (n * h, triton.cdiv(w, block_w))
        self._kernel[grid](
            x, b.dw, b.pw, b.bias, b.slope if b.slope is not None else b.bias,
            residual if residual is not None else out, out, h, w,
            CIN=b.cin, COUT=b.cout, CIN_P=cin_p, COUT_P=cout_p, K=b.k, BLOCK_W=block_w,
            BLOCK_CO=min(64, cout_p), PRELU=b.slope is not None, RESIDUAL=residual is not None,
            SHUFFLE=b.shuffle, SIGMOID2=b.sigmoid2, IEEE=self.dtype == torch.float32,
        )
        return out


class CudaGraphed:
    """Replays ``fn`` from a CUDA graph, one graph per input shape: one launch instead of one per kernel,
    which matters at batch 1 (37 launches of a few microseconds each). The output tensor is reused by the
    next call of the same shape; copy it if it must survive that."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype, x.device)
        if key not in self.graphs:
            static_in = x.clone()
            side = torch.cuda.Stream(x.device)
            side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side):  # warm-up outside the graph: Triton compiles, the allocator settles
                for _ in range(2):
                    self.fn(static_in)
            torch.cuda.current_stream(x.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.fn(static_in)
            self.graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out
