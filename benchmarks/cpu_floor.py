"""The time floors of one 256x256 -> 1024x1024 pass on this CPU, from rates measured on it.

    python benchmarks/cpu_floor.py [--size 256] [--threads N] [--json benchmarks/results/cpu-floor.json]

The work per pass (FLOPs, and the bytes each operator must move when it runs as its own kernel) comes from
benchmarks/roofline.py, which records every operator of the BatchNorm-folded generator on PyTorch's meta
device. The rates are measured here, with every thread PyTorch uses:
  - fp32 matrix-product rate: the best of several 4096 x 4096 x 4096 ``torch.mm`` calls (oneDNN / MKL sgemm,
    which runs close to the cores' FMA peak), the most this machine's cores deliver in fp32;
  - copy bandwidth: the best of several 1 GiB tensor copies (read + write counted), what a memory-bound
    pass such as PReLU or PixelShuffle can reach.
The compute floor is total FLOPs / the matrix rate; depthwise convolutions cannot reach it (each output reads
one input channel, so there is little reuse in registers), so it is a bound, not a prediction. The memory
floor is the eager bytes / the copy bandwidth. Stop other jobs first.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cxrsr.inference.bench import cpu_model
from roofline import measure


def best_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_rate(n: int = 4096, repeats: int = 5) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    out = torch.empty(n, n)
    return 2.0 * n**3 / best_seconds(lambda: torch.mm(a, b, out=out), repeats)


def copy_bandwidth(nbytes: int = 1 << 30, repeats: int = 5) -> float:
    src = torch.rand(nbytes // 4)
    dst = torch.empty_like(src)
    return 2.0 * nbytes / best_seconds(lambda: dst.copy_(src), repeats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=None, help="PyTorch threads (default: PyTorch's choice)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    costs, _, _, _ = measure(args.size)
    flops = sum(c.dw_flops + c.mm_flops + c.other_flops for c in costs.values())
    dw = sum(c.dw_flops for c in costs.values())
    eager_bytes = sum(c.elements_moved for c in costs.values()) * 4
    mm, bw = matmul_rate(), copy_bandwidth()
    row = {"cpu": cpu_model() or "unknown CPU", "capability": torch.backends.cpu.get_cpu_capability(),
           "threads": torch.get_num_threads(), "size": args.size, "gflop": flops / 1e9, "depthwise_gflop": dw / 1e9,
           "eager_mb": eager_bytes / 1e6, "matmul_gflop_per_s": mm / 1e9, "copy_gb_per_s": bw / 1e9,
           "compute_floor_s": flops / mm, "memory_floor_s": eager_bytes / bw}
    print(f"{row['cpu']} ({row['capability']}), {row['threads']} threads, input {args.size}x{args.size}")
    print(f"work per pass: {row['gflop']:.2f} GFLOP ({row['depthwise_gflop']:.2f} in depthwise convolutions), "
          f"{row['eager_mb']:.0f} MB moved by operators run one at a time (fp32)")
    print(f"measured: fp32 sgemm {row['matmul_gflop_per_s']:.0f} GFLOP/s, copy {row['copy_gb_per_s']:.1f} GB/s")
    print(f"floors per image: compute {row['compute_floor_s']:.3f} s, memory (eager) {row['memory_floor_s']:.3f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
