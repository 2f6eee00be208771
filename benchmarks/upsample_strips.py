"""A CPU lead measured and not kept: an upsampling block without the separate PixelShuffle and PReLU passes.

    python benchmarks/upsample_strips.py [--weights W] [--repeats 5]

The block is depthwise 3x3 -> 1x1 convolution C -> 4C -> PixelShuffle(2) -> PReLU(C). Here the 1x1 convolution
is a matrix product over strips of rows, with its output columns reordered so that each strip lands directly in
PixelShuffle's channels-last layout, and PReLU (max(x, a x), valid for slopes <= 1) is applied to the strip while
it is still in cache. The output is checked against the block and each is timed at its real input size
(upsample 1 at 256^2, upsample 2 at 512^2, batch 1, channels-last, allocator tuned), for several strip sizes.
Stop other jobs first.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from cxrsr.inference.allocator import tune_cpu_allocator
from cxrsr.inference.optimize import fold_batchnorm
from cxrsr.models.layers import UpsampleBlock
from cxrsr.weights import load_generator, resolve_weights
from cpu_floor import best_seconds


class StripUpsample(nn.Module):
    def __init__(self, block: UpsampleBlock, strip_bytes: int) -> None:
        super().__init__()
        self.depthwise = block.conv.depthwise
        w = block.conv.pointwise.weight.detach()[:, :, 0, 0]  # (4C, C); output channel c * 4 + i * 2 + j
        c = w.shape[1]
        order = torch.tensor([ch * 4 + i * 2 + j for i in range(2) for j in range(2) for ch in range(c)])
        self.register_buffer("w", w[order].t().contiguous())  # (C, 4C), columns in (i, j, c) order
        self.register_buffer("b", block.conv.pointwise.bias.detach()[order].contiguous())
        slopes = block.act.weight.detach()
        if bool((slopes > 1).any()):
            raise ValueError("max(x, a x) equals PReLU only for slopes <= 1")
        self.register_buffer("a", slopes.repeat(2))  # one per (j, c)
        self.strip_bytes = strip_bytes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.depthwise(x)
        n, c, h, w = d.shape
        rows_in = d.permute(0, 2, 3, 1)  # (N, H, W, C), contiguous in channels-last
        out = torch.empty((n, h, 2, w, 2 * c), dtype=d.dtype)  # = (N, 2H, 2W, C) contiguous
        rows = max(1, self.strip_bytes // (w * 4 * c * d.element_size()))
        for k in range(n):
            for h0 in range(0, h, rows):
                h1 = min(h, h0 + rows)
                t = torch.addmm(self.b, rows_in[k, h0:h1].reshape(-1, c), self.w)
                t = t.view(h1 - h0, w, 2, 2 * c).permute(0, 2, 1, 3)
                torch.maximum(t, t * self.a, out=out[k, h0:h1])
        return out.view(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


def best_ms(fn, x, repeats: int) -> float:
    return best_seconds(lambda: fn(x), repeats) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=None)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    model, _ = load_generator(resolve_weights(args.weights))
    model = fold_batchnorm(model).eval().to(memory_format=torch.channels_last)
    tune_cpu_allocator()
    print("| block | input | block ms | its 1x1 convolution ms | strips: bytes -> ms | max abs difference |")
    print("| --- | --- | --- | --- | --- | --- |")
    with torch.inference_mode():
        for index, block in enumerate(model.upsampler):
            side = 256 * 2**index
            x = torch.randn(1, block.conv.depthwise.in_channels, side, side).contiguous(
                memory_format=torch.channels_last)
            ref = block(x)
            strips, diff = [], 0.0
            for strip_bytes in (1 << 18, 1 << 20, 1 << 22):
                s = StripUpsample(block, strip_bytes)
                diff = max(diff, float((s(x) - ref).abs().max()))
                strips.append(f"{strip_bytes >> 10} KiB -> {best_ms(s, x, args.repeats):.1f}")
            dw = block.conv.depthwise(x)
            print(f"| upsample {index + 1} | {side}^2 | {best_ms(block, x, args.repeats):.1f} | "
                  f"{best_ms(block.conv.pointwise, dw, args.repeats):.1f} | {', '.join(strips)} | {diff:.2e} |")


if __name__ == "__main__":
    main()
