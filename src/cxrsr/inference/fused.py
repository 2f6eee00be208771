"""The generator as one fused Triton kernel launch per separable block (kernels.py), for CUDA GPUs.

At 4x with 16 residual blocks that is 37 launches instead of the eager model's 115 operators, and none of the
pre-shuffle 256-channel tensors, PReLU outputs or residual sums are written to memory (benchmarks/roofline.py
counts the traffic). Activations are channels-last in fp16 (or fp32); every accumulation is fp32.

Without a GPU the same kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, slow): that is how
the tests compare this path with the eager reference on the CPU.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import os
import time
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


#: The launch settings the autotuner may choose from: pixels per program (BLOCK_W), output channels per
#: matrix product (BLOCK_CO) and warps per program. ``fits`` drops those that do not suit a block's shape.
SEARCH_SPACE = tuple((bw, bco, warps) for bw in (32, 64, 128) for bco in (16, 32, 64, 128) for warps in (4, 8))

#: The key under which the autotuner keeps one choice: everything that changes the kernel or its work.
TUNING_KEY = ("N", "H", "W", "CIN", "COUT", "K", "PRELU", "RESIDUAL", "SHUFFLE", "SIGMOID2")


def fits(block_w: int, block_co: int, width: int, cout: int) -> bool:
    """Whether a launch setting suits a block: no program wider than the (padded) row unless it is the
    narrowest, no matrix product wider than the (padded) output channels, and none narrower than 32 channels
    unless the block has fewer."""
    cout_p = _padded(cout)
    return block_w <= max(32, _padded(width)) and min(32, cout_p) <= block_co <= cout_p


def _padded(n: int) -> int:
    """A kernel dimension padded to the next power of two, at least 16 (``tl.dot``'s smallest tile)."""
    return max(16, 1 << max(0, int(n) - 1).bit_length())


@functools.lru_cache(maxsize=None)
def _autotuned_kernel():
    """The kernel wrapped in Triton's autotuner: on the first launch of each shape (TUNING_KEY) it times every
    setting of SEARCH_SPACE that ``fits`` and keeps the fastest; timings are cached on disk by Triton. One
    instance for the process, so every FusedGenerator shares the choices."""
    import triton

    from .kernels import separable_block_kernel

    def prune(configs, named_args, **kwargs):
        args = {**named_args, **kwargs}
        return [c for c in configs if fits(c.kwargs["BLOCK_W"], c.kwargs["BLOCK_CO"], args["W"], args["COUT"])]

    configs = [triton.Config({"BLOCK_W": bw, "BLOCK_CO": bco}, num_warps=warps) for bw, bco, warps in SEARCH_SPACE]
    options = {"configs": configs, "key": list(TUNING_KEY), "prune_configs_by": {"early_config_prune": prune}}
    accepted = inspect.signature(triton.autotune).parameters
    if "cache_results" in accepted:  # Triton >= 3.2 keeps timings on disk
        options["cache_results"] = True
    if os.environ.get("TRITON_INTERPRET") == "1" and "do_bench" in accepted:
        # The interpreter has no GPU timer: time with the wall clock. The choice means nothing for speed, but
        # the tuning runs through the same code as on a GPU (that is how the tests check it).
        options["do_bench"] = _wall_clock_bench
    return triton.autotune(**options)(separable_block_kernel)


def _wall_clock_bench(kernel_call, quantiles=None):
    start = time.perf_counter()
    kernel_call()
    ms = (time.perf_counter() - start) * 1000
    return [ms] * len(quantiles) if quantiles else ms


class FusedGenerator:
    """Callable like the generator: (N, C, H, W) float -> (N, C, sH, sW) float32, computed by fused kernels.

    Launch settings: fixed (``block_w`` pixels and up to ``block_co`` output channels per program,
    ``num_warps`` warps), or with ``tune=True`` chosen per block shape by timing SEARCH_SPACE on the GPU on
    first use (the module's ``tuned_settings()`` then says what was chosen)."""

    def __init__(self, model: Generator, device: torch.device, dtype: torch.dtype = torch.float16,
                 block_w: int = 64, block_co: int = 64, num_warps: int = 4, tune: bool = False) -> None:
        if dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise ValueError(f"unsupported dtype {dtype}")
        for name, value in (("block_w", block_w), ("block_co", block_co)):
            if value < 16 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two >= 16, not {value}")
        if not triton_available(device):
            raise ValueError("the fused Triton path needs the triton package and a CUDA device "
                             "(or Triton's interpreter, TRITON_INTERPRET=1, on the CPU)")
        import triton  # imported here, not at module level: the package works without Triton

        from .kernels import separable_block_kernel

        self._triton = triton
        self._kernel = _autotuned_kernel() if tune else separable_block_kernel
        m = fold_batchnorm(model)
        self.device, self.dtype, self.tune = device, dtype, tune
        self.block_w, self.block_co, self.num_warps = block_w, block_co, num_warps
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
        cin_p, cout_p = _padded(b.cin), _padded(b.cout)
        if self.tune:
            launch = {}
            grid = lambda meta: (n * h, triton.cdiv(w, meta["BLOCK_W"]))  # noqa: E731
        else:
            block_w = min(self.block_w, _padded(w))
            launch = {"BLOCK_W": block_w, "BLOCK_CO": min(self.block_co, cout_p), "num_warps": self.num_warps}
            grid = (n * h, triton.cdiv(w, block_w))
        self._kernel[grid](
            x, b.dw, b.pw, b.bias, b.slope if b.slope is not None else b.bias,
            residual if residual is not None else out, out, h, w, n,
            CIN=b.cin, COUT=b.cout, CIN_P=cin_p, COUT_P=cout_p, K=b.k, PRELU=b.slope is not None,
            RESIDUAL=residual is not None, SHUFFLE=b.shuffle, SIGMOID2=b.sigmoid2,
            IEEE=self.dtype == torch.float32, **launch,
        )
        return out


def tuned_settings() -> list[dict]:
    """The launch settings the autotuner chose in this process, one entry per block shape and dtypes."""
    if _autotuned_kernel.cache_info().currsize == 0:
        return []
    chosen = []
    for key, config in _autotuned_kernel().cache.items():
        shape = {name: (v if isinstance(v, (int, bool)) else str(v)) for name, v in zip(TUNING_KEY, key)}
        chosen.append({**shape, "dtypes": sorted({str(v) for v in key[len(TUNING_KEY):]}),
                       "BLOCK_W": config.kwargs["BLOCK_W"], "BLOCK_CO": config.kwargs["BLOCK_CO"],
                       "num_warps": config.num_warps})
    return chosen


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
