"""Where does an inference pass spend its time? Layer by layer (the same groups as roofline.py), then the
operators (or GPU kernels) that take the most time, from torch.profiler.

    python benchmarks/profile_inference.py --weights W [--device cpu|cuda] [--path reference|default|fp16]
                                           [--batch 1] [--size 256] [--repeats 3] [--trace trace.json]

Paths: ``reference`` is the eager fp32 model as loaded (BatchNorm unfolded, contiguous); ``default`` is what
Upscaler runs on that device (BatchNorm folded; channels-last on the CPU); ``fp16`` is the folded model in
fp16, channels-last (CUDA only). Layer times come from forward hooks that synchronise the device at each
layer boundary, so they add up to slightly more than an unhooked pass; the median of ``--repeats`` passes
after one warm-up is reported. ``--trace`` writes a Chrome trace of one profiled pass.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch

from cxrsr.inference.allocator import tune_cpu_allocator
from cxrsr.inference.device import resolve_device
from cxrsr.inference.optimize import fold_batchnorm
from cxrsr.weights import load_generator

GROUPS = ("initial", "residual", "convblock", "upsampler.0", "upsampler.1", "upsampler.2", "final_conv")


def build(path: str, weights: str, device: torch.device):
    model, _ = load_generator(weights)
    model = model.eval()
    if path == "reference":
        return model.to(device), torch.float32, torch.contiguous_format
    folded = fold_batchnorm(model).to(device)
    if path == "default":
        layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
        return folded.to(memory_format=layout), torch.float32, layout
    if path == "fp16":
        if device.type != "cuda":
            raise SystemExit("--path fp16 needs --device cuda")
        return folded.to(torch.float16, memory_format=torch.channels_last), torch.float16, torch.channels_last
    raise SystemExit(f"unknown path {path}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def layer_times(model, x: torch.Tensor, device: torch.device, repeats: int) -> dict[str, float]:
    """Median seconds per pass spent in each group of layers; "tail" is the rest (long skip, tanh)."""
    starts: dict[str, float] = {}
    spent: dict[str, float] = defaultdict(float)
    handles = []
    for name, module in model.named_modules():
        if name not in GROUPS:
            continue

        def pre(_m, _inp, group=name):
            _sync(device)
            starts[group] = time.perf_counter()

        def post(_m, _inp, _out, group=name):
            _sync(device)
            spent[group] += time.perf_counter() - starts[group]

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    runs = []
    try:
        with torch.inference_mode():
            model(x)  # warm-up
            for _ in range(repeats):
                spent.clear()
                _sync(device)
                t = time.perf_counter()
                model(x)
                _sync(device)
                total = time.perf_counter() - t
                runs.append({**spent, "tail": total - sum(spent.values()), "total": total})
    finally:
        for h in handles:
            h.remove()
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def top_operators(model, x: torch.Tensor, device: torch.device, n: int, trace: str | None) -> str:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode():
        for _ in range(2):  # warm-up: on the CPU the second pass is the first to reuse the heap fully
            model(x)
        with profile(activities=activities, record_shapes=True) as prof:
            model(x)
            _sync(device)
    if trace:
        prof.export_chrome_trace(trace)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages(group_by_input_shape=True).table(sort_by=sort, row_limit=n, max_name_column_width=40)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--path", default="reference", choices=("reference", "default", "fp16"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--top", type=int, default=15, help="operators listed (default 15)")
    ap.add_argument("--trace", help="write a Chrome trace of one profiled pass")
    args = ap.parse_args()

    device = resolve_device(args.device)
    if device.type == "cpu":
        tune_cpu_allocator()  # as Upscaler does
    model, dtype, layout = build(args.path, args.weights, device)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device).to(dtype).contiguous(memory_format=layout)
    times = layer_times(model, x, device, args.repeats)
    total = times.pop("total")
    print(f"{args.path} on {device}, batch {args.batch}, {args.size}x{args.size} input: "
          f"{total * 1000 / args.batch:.1f} ms per image (hooked)")
    print(f"{'layers':14s} {'ms/img':>9s} {'share':>7s}")
    for name, seconds in times.items():
        print(f"{name:14s} {seconds * 1000 / args.batch:9.1f} {seconds / total:7.1%}")
    print()
    print(top_operators(model, x, device, args.top, args.trace))


if __name__ == "__main__":
    main()
