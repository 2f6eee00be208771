"""Which layers can run in bf16? PSNR change on real X-rays and CPU time per 256x256 image when one group of
layers at a time runs in bf16 (the rest fp32; BatchNorm folded, channels-last, allocator tuned).

    python benchmarks/bf16_by_layer.py --weights PATH [--images ../shared/data/cxr/nih/test] [--n 6]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from cxrsr.evaluation.evaluate import list_images
from cxrsr.evaluation.protocol import load_pair, psnr
from cxrsr.inference.allocator import tune_cpu_allocator
from cxrsr.inference.optimize import fold_batchnorm
from cxrsr.models import Generator
from cxrsr.weights import load_generator, resolve_weights

GROUPS = ("initial", "residual", "convblock", "upsampler", "final_conv")


class PartlyBf16(nn.Module):
    """The generator's forward pass with the named top-level groups in bf16 and the rest in fp32."""

    def __init__(self, model: Generator, bf16: tuple[str, ...]) -> None:
        super().__init__()
        self.g = fold_batchnorm(model).to(memory_format=torch.channels_last)
        self.bf16 = bf16
        for name in bf16:
            getattr(self.g, name).to(torch.bfloat16)

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        module = getattr(self.g, name)
        return module(x.to(torch.bfloat16)).float() if name in self.bf16 else module(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        initial = self._run("initial", x)
        h = self._run("convblock", self._run("residual", initial)) + initial
        h = self._run("final_conv", self._run("upsampler", h))
        return (torch.tanh(h) + 1) / 2


def measure(model: nn.Module, pairs) -> tuple[float, float]:
    scores = []
    with torch.inference_mode():
        for pair in pairs:
            lr = torch.from_numpy(pair.lr.astype(np.float32))[None, None].expand(1, 3, -1, -1)
            sr = model(lr.contiguous(memory_format=torch.channels_last)).mean(1)[0].numpy().astype(np.float64)
            scores.append(psnr(sr, pair.hr))
        x = torch.rand(1, 3, 256, 256).contiguous(memory_format=torch.channels_last)
        model(x)
        t = time.perf_counter()
        for _ in range(2):
            model(x)
    return float(np.mean(scores)), (time.perf_counter() - t) / 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default=None)
    parser.add_argument("--images", default="../shared/data/cxr/nih/test")
    parser.add_argument("--n", type=int, default=6)
    args = parser.parse_args()
    tune_cpu_allocator()
    model, _ = load_generator(resolve_weights(args.weights))
    pairs = [load_pair(p) for p in list_images(args.images)[: args.n]]
    ref_psnr, ref_time = measure(PartlyBf16(model, ()), pairs)
    print(f"all fp32: PSNR {ref_psnr:.4f} dB, {ref_time:.3f} s per image")
    for groups in [(g,) for g in GROUPS] + [("upsampler", "final_conv"), GROUPS]:
        p, t = measure(PartlyBf16(model, groups), pairs)
        print(f"bf16 {'+'.join(groups):45s} PSNR change {p - ref_psnr:+.4f} dB, {t:.3f} s per image")


if __name__ == "__main__":
    main()
