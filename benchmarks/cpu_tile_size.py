"""Time per 256x256-equivalent of one generator forward pass on the CPU, by input size and memory layout.

    python benchmarks/cpu_tile_size.py --weights PATH [--sizes 128 176 256 304 400 560]

Prints one line per (layout, size). Used to choose the CPU tile size and the channels-last layout.
"""

from __future__ import annotations

import argparse
import time

import torch

from cxrsr.weights import load_generator, resolve_weights


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 176, 256, 304, 400, 560])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model, _ = load_generator(resolve_weights(args.weights))
    print(f"threads={torch.get_num_threads()} torch={torch.__version__}")
    with torch.inference_mode():
        for layout in (torch.contiguous_format, torch.channels_last):
            m = model.to(memory_format=layout)
            for s in args.sizes:
                x = torch.rand(1, 3, s, s).contiguous(memory_format=layout)
                m(x)  # warm-up
                t = time.perf_counter()
                for _ in range(args.repeats):
                    m(x)
                dt = (time.perf_counter() - t) / args.repeats
                name = "channels_last" if layout == torch.channels_last else "contiguous"
                print(f"{name:14s} {s:4d}px  {dt:6.2f} s/pass  {dt * 65536 / (s * s):5.2f} s per 256x256")


if __name__ == "__main__":
    main()
