"""``cxrsr bench``: 256 -> 1024 throughput, latency, memory and PSNR of each inference path vs the reference."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from ..inference.bench import cpu_model, format_results, results_json, run_benchmark
from ..inference.device import resolve_device
from ..io import InputFileError
from ..io.atomic import atomic_path
from ..weights import WeightsError, load_generator, resolve_weights


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark the inference paths",
                       description="Measure 256x256 -> 1024x1024 throughput (img/s per batch size), batch-1 latency "
                                   "and peak memory of the eager fp32 reference and each fast path, with each path's "
                                   "speed-up and its PSNR difference from the reference on real X-rays.",
                       epilog="example:\n  cxrsr bench --weights w.safetensors --images ../shared/data/cxr/nih/test "
                              "--json bench.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=None, metavar="NAME|PATH")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                   help="default: 1 32 on a GPU; 1 4 on the CPU, where batch 32 needs over 24 GB (a 64-channel "
                        "1024x1024 fp32 activation at batch 32 is 8.6 GB)")
    p.add_argument("--size", type=int, default=256, help="input side (default 256 -> 1024 output)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--images", type=Path, help="folder of HR images (e.g. nih/test) for the PSNR comparison")
    p.add_argument("--max-images", type=int, default=10)
    p.add_argument("--include-bf16-cpu", action="store_true", help="also time bf16 on the CPU (not exact)")
    p.add_argument("--include-compile", action="store_true",
                   help="also time torch.compile: of the default path on the CPU, max-autotune fp16 on CUDA "
                        "(compiles on the warm-up call)")
    p.add_argument("--include-openvino", action="store_true",
                   help="also time OpenVINO on the CPU with its precision held to fp32, as an anchor (needs "
                        "cxrsr[openvino])")
    p.add_argument("--json", type=Path, help="write the numbers as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        model, _ = load_generator(resolve_weights(args.weights))
        device = resolve_device(args.device)
    except (WeightsError, ValueError) as exc:
        print(f"cxrsr: error: {exc}", file=sys.stderr)
        return 1
    pairs = None
    if args.images:
        from ..evaluation.evaluate import list_images
        from ..evaluation.protocol import load_pair

        try:
            pairs = [load_pair(p) for p in list_images(args.images)[: args.max_images]]
        except InputFileError as exc:  # the PSNR comparison needs every image it was given
            print(f"cxrsr: error: {exc}", file=sys.stderr)
            return 1
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"input {args.size}x{args.size}", flush=True)
    from ..inference.tiling import auto_tile_choice
    from ..inference.upscaler import DEFAULT_PAD

    # what `cxrsr upscale --tile auto` would cut an image into on this machine now (the timings below are
    # whole-image passes)
    tile, why = auto_tile_choice(device, model.config.channels, model.config.scale, torch.float32, DEFAULT_PAD)
    print(why, flush=True)
    batch_sizes = tuple(args.batch_sizes or ((1, 4) if device.type == "cpu" else (1, 32)))
    results = run_benchmark(model, device, batch_sizes, args.size, args.repeats, pairs,
                            args.include_bf16_cpu, log=lambda m: print(m, flush=True),
                            include_compile=args.include_compile, include_openvino=args.include_openvino)
    print(format_results(results))
    if args.json:
        extra = {"torch": torch.__version__, "threads": torch.get_num_threads(), "size": args.size,
                 "machine": cpu_model() or platform.processor() or platform.machine(),
                 "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                 "images": str(args.images) if args.images else None, "n_images": len(pairs or []),
                 "auto_tile": tile, "auto_tile_reason": why}
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(results_json(results, device, extra), indent=2) + "\n")
    failed = [r.path for r in results if r.error]
    if failed:  # the others were measured and written; the exit status still says something went wrong
        print(f"cxrsr: error: {len(failed)} path(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
