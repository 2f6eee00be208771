"""FLOPs and memory traffic of one 256x256 -> 1024x1024 generator pass, layer by layer, and the time floors
they set on a machine (default: one H100 SXM 80 GB; pass other rates for other machines).

    python benchmarks/roofline.py [--size 256] [--batch 32] [--bandwidth 3.0e12] [--fp32 67e12]
                                  [--fp16 134e12] [--fp16-tensor 990e12]

Nothing is timed: the BatchNorm-folded model runs on PyTorch's meta device and every ATen operator it calls
is recorded with its shapes. FLOPs count a multiply-add as two. "Eager bytes" is the least that running each
operator as its own kernel must move (read its inputs and weights once, write its output once); the "fused
floor" is what one kernel for the whole network must move (input image, weights, output image).
Depthwise convolutions cannot use tensor cores efficiently (one input channel per output channel), so they
are bounded by the CUDA-core rate; pointwise (1x1) convolutions are matrix products and use tensor cores.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from cxrsr.inference.optimize import fold_batchnorm
from cxrsr.models import Generator, GeneratorConfig

# Operators that only relabel memory: no kernel, no traffic.
_FREE = {"view", "_unsafe_view", "reshape", "expand", "t", "permute", "detach", "alias", "as_strided", "unsqueeze",
         "squeeze", "empty", "empty_like", "empty_strided", "resize_", "lift_fresh"}

LAYERS = {
    "initial": "initial: 9x9 separable 3->64 + PReLU (256^2)",
    "residual": "16 residual blocks: 2x (3x3 dw + 1x1 64->64) (256^2)",
    "convblock": "conv block + long skip (256^2)",
    "upsampler.0": "upsample 1: 3x3 dw + 1x1 64->256, shuffle, PReLU (256^2)",
    "upsampler.1": "upsample 2: 3x3 dw + 1x1 64->256, shuffle, PReLU (512^2)",
    "final_conv": "final: 9x9 dw (1024^2) + 1x1 64->3",
    "tail": "tanh, (x + 1) / 2 (1024^2)",
}


@dataclass
class Cost:
    dw_flops: float = 0.0  # depthwise convolutions (CUDA cores)
    mm_flops: float = 0.0  # dense and pointwise convolutions (tensor cores)
    other_flops: float = 0.0  # element-wise work
    elements_moved: int = 0  # activation + weight elements read and written, one kernel per operator
    kernels: int = 0


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.layer = "tail"
        self.costs: dict[str, Cost] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.__name__.split(".")[0]
        if name in _FREE:
            return out
        cost = self.costs.setdefault(self.layer, Cost())
        ins = [a for a in _flatten(args) if isinstance(a, torch.Tensor)]
        outs = [o for o in _flatten(out) if isinstance(o, torch.Tensor)]
        cost.elements_moved += sum(t.numel() for t in ins) + sum(t.numel() for t in outs)
        cost.kernels += 1
        if name == "convolution":
            w, groups, o = args[1], args[8], outs[0]
            flops = 2.0 * o.numel() * w.shape[1] * w.shape[2] * w.shape[3]
            if groups > 1 and w.shape[1] == 1:
                cost.dw_flops += flops
            else:
                cost.mm_flops += flops
            cost.other_flops += o.numel() if args[2] is not None else 0  # bias
        else:
            cost.other_flops += sum(o.numel() for o in outs)
        return out


def _flatten(obj):
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _flatten(item)
    else:
        yield obj


def measure(size: int) -> tuple[dict[str, Cost], int, int, int]:
    """Per-layer costs of one (1, 3, size, size) pass; also parameter, input and output element counts."""
    with torch.device("meta"):
        model = fold_batchnorm(Generator(GeneratorConfig()).eval())
        x = torch.empty(1, 3, size, size)
    rec = _Recorder()
    modules = dict(model.named_modules())
    for key in LAYERS:
        if key in modules:
            modules[key].register_forward_pre_hook(lambda _m, _i, key=key: setattr(rec, "layer", key))
            modules[key].register_forward_hook(lambda *_a: setattr(rec, "layer", "tail"))
    with torch.no_grad(), rec:
        y = model(x)
    params = sum(p.numel() for p in model.parameters())
    return rec.costs, params, x.numel(), y.numel()


def per_block_fused_bytes(size: int, act_bytes: int, config: GeneratorConfig | None = None) -> float:
    """Traffic of the fused Triton path (inference/fused.py): each separable block reads its input (and a
    residual where it adds one) once and writes its output once; the output image is fp32."""
    c = config or GeneratorConfig()
    lr = size * size
    elements = c.in_channels * lr + c.channels * lr  # initial block
    elements += c.blocks * 5 * c.channels * lr  # per residual block: in, out | in, residual, out
    elements += 3 * c.channels * lr  # conv block + long skip
    pixels = lr
    for _ in range(c.upsample_blocks):
        elements += c.channels * pixels + c.channels * 4 * pixels
        pixels *= 4
    elements += c.channels * pixels  # final block's input
    return elements * act_bytes + c.in_channels * pixels * 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32, help="batch size for the per-image weight traffic")
    parser.add_argument("--bandwidth", type=float, default=3.0e12, help="memory bytes/s (H100 SXM: 3.0e12 copy)")
    parser.add_argument("--fp32", type=float, default=67e12, help="fp32 CUDA-core FLOP/s (H100 SXM: 67e12)")
    parser.add_argument("--fp16", type=float, default=134e12, help="fp16 CUDA-core FLOP/s (H100 SXM: 134e12)")
    parser.add_argument("--fp16-tensor", type=float, default=990e12, help="dense fp16 tensor FLOP/s (H100: 990e12)")
    args = parser.parse_args()

    costs, params, n_in, n_out = measure(args.size)
    print(f"input {args.size}x{args.size}, {params:,} parameters (BatchNorm folded)\n")
    print("| layer | depthwise GFLOP | matmul GFLOP | other GFLOP | kernels | eager MB fp32 | eager MB fp16 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    total = Cost()
    for key, label in LAYERS.items():
        c = costs.get(key, Cost())
        print(f"| {label} | {c.dw_flops / 1e9:.2f} | {c.mm_flops / 1e9:.2f} | {c.other_flops / 1e9:.2f} | {c.kernels} "
              f"| {c.elements_moved * 4 / 1e6:.0f} | {c.elements_moved * 2 / 1e6:.0f} |")
        for f in ("dw_flops", "mm_flops", "other_flops", "elements_moved", "kernels"):
            setattr(total, f, getattr(total, f) + getattr(c, f))
    print(f"| **total** | {total.dw_flops / 1e9:.2f} | {total.mm_flops / 1e9:.2f} | {total.other_flops / 1e9:.2f} "
          f"| {total.kernels} | {total.elements_moved * 4 / 1e6:.0f} | {total.elements_moved * 2 / 1e6:.0f} |")

    fused = {b: (n_in + n_out) * b + params * b / args.batch for b in (4, 2)}  # elements -> bytes below
    print("\nTime floors per image (microseconds), one H100-class GPU as given by the rates above:\n")
    print("| what bounds it | fp32 | fp16 / bf16 |")
    print("| --- | ---: | ---: |")
    print(f"| memory, eager (one kernel per operator) | {total.elements_moved * 4 / args.bandwidth * 1e6:.0f} "
          f"| {total.elements_moved * 2 / args.bandwidth * 1e6:.0f} |")
    print(f"| memory, one fused kernel per separable block (inference/fused.py) "
          f"| {per_block_fused_bytes(args.size, 4) / args.bandwidth * 1e6:.0f} "
          f"| {per_block_fused_bytes(args.size, 2) / args.bandwidth * 1e6:.0f} |")
    print(f"| memory, fully fused (input + output + weights/batch) | {fused[4] / args.bandwidth * 1e6:.1f} "
          f"| {fused[2] / args.bandwidth * 1e6:.1f} |")
    print(f"| depthwise FLOPs on CUDA cores | {total.dw_flops / args.fp32 * 1e6:.0f} "
          f"| {total.dw_flops / args.fp16 * 1e6:.0f} |")
    print(f"| matmul FLOPs (fp32 CUDA cores / fp16 tensor cores) | {total.mm_flops / args.fp32 * 1e6:.0f} "
          f"| {total.mm_flops / args.fp16_tensor * 1e6:.0f} |")
    print(f"| element-wise FLOPs on CUDA cores | {total.other_flops / args.fp32 * 1e6:.0f} "
          f"| {total.other_flops / args.fp16 * 1e6:.0f} |")


if __name__ == "__main__":
    main()
