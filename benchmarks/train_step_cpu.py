"""CPU training speed, measured where it goes and what each change gives.

    python benchmarks/train_step_cpu.py --train ../shared/data/cxr/nih/train --val ../shared/data/cxr/nih/val

Four parts (pick with --parts; all by default), at the CPU fine-tune's shape (batch 8 of 32x32 LR -> 128x128 HR,
BatchNorm statistics frozen, AdamW, MSE):
  layers:   each depthwise convolution shape of the generator, forward and backward, PyTorch's backward against
            the reformulated one of cxrsr.training.depthwise (channels-last);
  profile:  one training step split into forward and backward per layer group (hooks), the loss, AdamW and the
            EMA update;
  variants: the bare step (no loader) in the default layout, channels-last, + the faster depthwise backward,
            + frozen BatchNorm folded into the convolutions, + bf16 autocast (AMX), + torch.compile;
  sizes:    (only when asked for) the default path's bare step at batch x HR patch 32x64, 16x96, 8x128,
            4x192, 2x256: which shape learns the most HR pixels per second;
  loop:     the real training loop (cxrsr.training.train) before (default layout, PyTorch's backward, 1 loader
            worker: the old configs/nih_fidelity_cpu_short.toml) and with each change added in turn (channels-last,
            faster depthwise backward, frozen BatchNorm folded), then 0, 1 and 2 loader workers; samples/s after warm-up, HR megapixels/s, and the CPU
            seconds of the main process against the loader workers.
Stop other jobs first: the numbers share the two cores with anything else running.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cxrsr.models import Generator
from cxrsr.training import load_config, train
from cxrsr.training.depthwise import eligible, restore_depthwise, use_fast_depthwise
from cxrsr.training.frozen_bn import fold_frozen_batchnorm

CL = torch.channels_last


def make_generator(channels_last: bool, fast: bool, fold_bn: bool = False) -> Generator:
    torch.manual_seed(0)
    g = Generator().train()
    for m in g.modules():  # frozen BatchNorm statistics, as configs with optim.freeze_bn
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    if channels_last:
        g.to(memory_format=CL)
    if fast:
        use_fast_depthwise(g)
    if fold_bn:
        fold_frozen_batchnorm(g)
    return g


def batch(b: int, hr: int, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    lr, target = torch.rand(b, 3, hr // 4, hr // 4), torch.rand(b, 3, hr, hr)
    return (lr.to(memory_format=CL), target.to(memory_format=CL)) if channels_last else (lr, target)


def timed(fn, repeats: int) -> float:
    fn()
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


# ---------------------------------------------------------------------------------------------------- layers


def depthwise_shapes(b: int, hr: int) -> list[tuple[str, int, int, int, int]]:
    """(name, count, channels, kernel, side) of each distinct depthwise convolution at this HR size."""
    g = Generator()
    sides: dict[str, int] = {}
    def record(name: str):
        def hook(module, inputs, output) -> None:
            sides[name] = inputs[0].shape[-1]
        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in g.named_modules() if eligible(m)]
    with torch.no_grad():
        g(torch.rand(1, 3, hr // 4, hr // 4))
    for h in hooks:
        h.remove()
    shapes: dict[tuple[int, int, int], list[str]] = {}
    for name, m in g.named_modules():
        if eligible(m):
            shapes.setdefault((m.in_channels, m.kernel_size[0], sides[name]), []).append(name)
    return [(names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} alike)", len(names), c, k, s)
            for (c, k, s), names in shapes.items()]


def layers(b: int, hr: int, repeats: int) -> list[dict]:
    rows = []
    for name, count, c, k, side in depthwise_shapes(b, hr):
        conv = nn.Conv2d(c, c, k, padding=k // 2, groups=c).to(memory_format=CL)
        x = torch.randn(b, c, side, side).to(memory_format=CL).requires_grad_(c > 3)
        grad = torch.randn(b, c, side, side).to(memory_format=CL)
        row = {"layer": name, "count": count, "channels": c, "kernel": k, "side": side}
        for label, fast in (("pytorch", False), ("reformulated", True)):
            (use_fast_depthwise(conv, min_kernel=1, min_channels=1) if fast else restore_depthwise(conv))
            forward = timed(lambda: conv(x), repeats)

            def both():
                conv.zero_grad(set_to_none=True)
                x.grad = None
                conv(x).backward(grad)

            row[f"{label}_forward_ms"] = round(forward * 1000, 2)
            row[f"{label}_backward_ms"] = round((timed(both, repeats) - forward) * 1000, 2)
        rows.append(row)
        print(f"{name}: {c} ch, {k}x{k} at {side}^2 x{count}: backward {row['pytorch_backward_ms']} ms (PyTorch) "
              f"vs {row['reformulated_backward_ms']} ms (reformulated); forward {row['pytorch_forward_ms']} ms",
              flush=True)
    return rows


# --------------------------------------------------------------------------------------------------- profile

GROUPS = ("initial", "residual", "convblock", "upsampler.0", "upsampler.1", "final_conv")


def profile(b: int, hr: int, repeats: int) -> dict:
    """Milliseconds per part of one step (channels-last, faster depthwise backward), averaged over steps."""
    g = make_generator(True, True)
    ema = AveragedModel(g, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=True)
    opt = torch.optim.AdamW([p for p in g.parameters() if p.requires_grad], lr=1e-4)
    lr, target = batch(b, hr, True)
    marks: list[tuple[str, float]] = []
    modules = dict(g.named_modules())
    for name in GROUPS:
        modules[name].register_forward_pre_hook(lambda m, i, n=name: marks.append((f"forward {n}", time.perf_counter())))
        modules[name].register_full_backward_pre_hook(
            lambda m, go, n=name: marks.append((f"backward {n}", time.perf_counter())))
    totals: dict[str, float] = {}

    def step() -> None:
        marks.clear()
        sr = g(lr)
        marks.append(("forward tanh, skip; loss", time.perf_counter()))
        loss = torch.nn.functional.mse_loss(sr, target)
        marks.append(("backward of loss, tanh", time.perf_counter()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(("AdamW step", time.perf_counter()))
        opt.step()
        marks.append(("EMA update", time.perf_counter()))
        ema.update_parameters(g)
        marks.append(("end", time.perf_counter()))

    step()
    for _ in range(repeats):
        step()
        for (label, t), (_, t_next) in zip(marks, marks[1:]):
            totals[label] = totals.get(label, 0.0) + (t_next - t) * 1000 / repeats
    total = sum(totals.values())
    for label, ms in totals.items():
        print(f"  {label:32s} {ms:7.1f} ms  {100 * ms / total:5.1f} %")
    print(f"  {'step':32s} {total:7.1f} ms  ({b / total * 1000:.1f} samples/s)", flush=True)
    return {"ms": {k: round(v, 2) for k, v in totals.items()}, "step_ms": round(total, 1)}


# -------------------------------------------------------------------------------------------------- variants


def variants(b: int, hr: int, repeats: int) -> dict:
    results = {}
    for name, channels_last, fast, fold_bn, bf16, compiled in (
        ("default layout (PyTorch backward)", False, False, False, False, False),
        ("channels-last", True, False, False, False, False),
        ("channels-last + faster depthwise backward", True, True, False, False, False),
        ("channels-last + faster depthwise backward + frozen BatchNorm folded", True, True, True, False, False),
        ("channels-last + faster depthwise backward + bf16 autocast", True, True, False, True, False),
        ("channels-last + torch.compile", True, False, False, False, True),
    ):
        g = make_generator(channels_last, fast, fold_bn)
        opt = torch.optim.AdamW([p for p in g.parameters() if p.requires_grad], lr=1e-4)
        lr, target = batch(b, hr, channels_last)
        forward = torch.compile(g) if compiled else g

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.mse_loss(forward(lr).float(), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        try:
            if compiled:  # compilation happens in the first calls, which timed() does not count
                step()
            seconds = timed(step, repeats)
        except Exception as exc:  # a variant that fails is reported, the others still measured
            print(f"{name}: failed ({type(exc).__name__}: {str(exc)[:200]})", flush=True)
            results[name] = None
            continue
        results[name] = {"samples_per_s": round(b / seconds, 1), "hr_mpx_per_s": round(b * hr * hr / seconds / 1e6, 3)}
        print(f"{name}: {results[name]['samples_per_s']} samples/s, {results[name]['hr_mpx_per_s']} HR Mpx/s",
              flush=True)
    return results


# ----------------------------------------------------------------------------------------------------- sizes


def sizes(shapes: list[tuple[int, int]], repeats: int) -> list[dict]:
    """The default training path's bare step at several batch x patch shapes: HR pixels learned per second."""
    rows = []
    for b, hr in shapes:
        g = make_generator(True, True, True)
        opt = torch.optim.AdamW([p for p in g.parameters() if p.requires_grad], lr=1e-4)
        lr, target = batch(b, hr, True)

        def step() -> None:
            loss = torch.nn.functional.mse_loss(g(lr), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        seconds = timed(step, repeats)
        rows.append({"batch": b, "hr": hr, "samples_per_s": round(b / seconds, 1),
                     "hr_mpx_per_s": round(b * hr * hr / seconds / 1e6, 3)})
        print(f"batch {b} of {hr}x{hr}: {rows[-1]['samples_per_s']} samples/s, {rows[-1]['hr_mpx_per_s']} HR Mpx/s",
              flush=True)
    return rows


# ------------------------------------------------------------------------------------------------------ loop


def loop(train_dir: str, b: int, hr: int, steps: int, warmup: int, configs: list[tuple[str, list[str]]]) -> dict:
    results = {}
    for name, overrides in configs:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(None, [f'run.out="{tmp}/run"', f'data.train="{train_dir}"', f"data.hr_size={hr}",
                                     f"optim.batch_size={b}", f"run.steps_pretrain={warmup + steps}",
                                     "run.log_every=1", 'run.device="cpu"', "run.val_every=100000",
                                     "run.ckpt_every=100000", "loss.perceptual_weight=0", "optim.freeze_bn=true",
                                     "optim.ema_decay=0.99", *overrides])
            before = os.times()
            train(cfg, progress=False)
            after = os.times()
            stamps = []
            with open(f"{tmp}/run/metrics.jsonl") as f:
                for line in f:
                    rec = json.loads(line)
                    if "speed/images_per_s" in rec:
                        stamps.append(rec)
        # the loop's own rate is cumulative from its start; take the rate over the steps after the warm-up
        first = next(r for r in stamps if r["step"] == warmup)
        last = stamps[-1]
        t_first = first["step"] * b / first["speed/images_per_s"]
        t_last = last["step"] * b / last["speed/images_per_s"]
        rate = (last["step"] - first["step"]) * b / (t_last - t_first)
        main_cpu = (after.user - before.user) + (after.system - before.system)
        workers_cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        results[name] = {"samples_per_s": round(rate, 1), "hr_mpx_per_s": round(rate * hr * hr / 1e6, 3),
                         "main_cpu_s": round(main_cpu, 1), "loader_workers_cpu_s": round(workers_cpu, 1)}
        print(f"{name}: {rate:.1f} samples/s ({rate * hr * hr / 1e6:.3f} HR Mpx/s); CPU seconds: main process "
              f"{main_cpu:.1f}, loader workers {workers_cpu:.1f}", flush=True)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default="../shared/data/cxr/nih/train")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--hr", type=int, default=128)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--loop-steps", type=int, default=60, help="timed steps of each loop run (after --warmup)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--parts", nargs="+", default=["layers", "profile", "variants", "loop"],
                   choices=["layers", "profile", "variants", "loop", "sizes"])
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    out: dict = {"batch": args.batch, "hr": args.hr, "threads": torch.get_num_threads(), "torch": torch.__version__}
    if "layers" in args.parts:
        print("depthwise layers, channels-last:", flush=True)
        out["layers"] = layers(args.batch, args.hr, args.repeats)
    if "profile" in args.parts:
        print("one training step (channels-last, faster depthwise backward):", flush=True)
        out["profile"] = profile(args.batch, args.hr, args.repeats)
    if "variants" in args.parts:
        print("bare training step (generator forward + backward + AdamW):", flush=True)
        out["variants"] = variants(args.batch, args.hr, args.repeats)
    if "sizes" in args.parts:
        print("bare step of the default path by batch and HR patch size:", flush=True)
        out["sizes"] = sizes([(32, 64), (16, 96), (8, 128), (4, 192), (2, 256)], args.repeats)
    if "loop" in args.parts:
        print("the training loop, with its loader:", flush=True)
        old = ["run.channels_last=false", "run.fast_depthwise=false", "run.fold_frozen_bn=false"]
        out["loop"] = loop(args.train, args.batch, args.hr, args.loop_steps, args.warmup, [
            ("before: default layout, PyTorch backward, 1 worker", old + ["data.workers=1"]),
            ("channels-last, 1 worker", ["run.fast_depthwise=false", "run.fold_frozen_bn=false", "data.workers=1"]),
            ("+ faster depthwise backward, 1 worker", ["run.fold_frozen_bn=false", "data.workers=1"]),
            ("+ frozen BatchNorm folded, 1 worker (the default)", ["data.workers=1"]),
            ("+ frozen BatchNorm folded, 0 workers", ["data.workers=0"]),
            ("+ frozen BatchNorm folded, 2 workers", ["data.workers=2"]),
            ("+ bf16 autocast (optim.amp=bf16), 1 worker", ["data.workers=1", 'optim.amp="bf16"']),
        ])
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
