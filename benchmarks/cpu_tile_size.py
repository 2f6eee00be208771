"""Time per 256x256-equivalent of one generator forward pass on the CPU, by input (tile) size, for the path
Upscaler runs there (BatchNorm folded, channels-last, allocator tuned as in inference/allocator.py).

    python benchmarks/cpu_tile_size.py --weights PATH [--sizes 128 176 256 304 400 560] [--system-allocator]
                                       [--threads N]

Prints one line per size. Used to choose the CPU tile size (tiling.CPU_TILE). With --system-allocator the
glibc defaults are kept, which shows what the allocator tuning changes. A tile of side s with the default
24-pixel context costs a forward pass at s + 48.
"""

from __future__ import annotations

import argparse
import time

import torch

from cxrsr.inference.allocator import tune_cpu_allocator
from cxrsr.inference.optimize import fold_batchnorm
from cxrsr.inference.tiling import auto_tile_choice
from cxrsr.inference.upscaler import DEFAULT_PAD
from cxrsr.weights import load_generator, resolve_weights


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 176, 256, 304, 400, 560])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--system-allocator", action="store_true", help="keep glibc's malloc defaults")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's choice)")
    args = parser.parse_args()
    tuned = False if args.system_allocator else tune_cpu_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, _ = load_generator(resolve_weights(args.weights))
    model = fold_batchnorm(model).to(memory_format=torch.channels_last)
    print(f"threads={torch.get_num_threads()} torch={torch.__version__} allocator={'tuned' if tuned else 'system'}")
    print(auto_tile_choice(torch.device("cpu"), model.config.channels, model.config.scale, torch.float32,
                           DEFAULT_PAD)[1])
    with torch.inference_mode():
        for s in args.sizes:
            x = torch.rand(1, 3, s, s).contiguous(memory_format=torch.channels_last)
            model(x)  # warm-up
            t = time.perf_counter()
            for _ in range(args.repeats):
                model(x)
            dt = (time.perf_counter() - t) / args.repeats
            print(f"{s:4d}px  {dt:6.2f} s/pass  {dt * 65536 / (s * s):5.2f} s per 256x256")


if __name__ == "__main__":
    main()
