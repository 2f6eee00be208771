"""Speed, memory and fidelity of each inference path against the eager fp32 reference, in one run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..models import Generator
from .allocator import allocator_tuned, tune_cpu_allocator
from .onnx import OnnxRunner, export_onnx
from .optimize import fold_batchnorm

REFERENCE = "eager-fp32 (reference)"
TUNED_REFERENCE = "eager-fp32 + allocator tuning"

Forward = Callable[[torch.Tensor], torch.Tensor]  # (N, 3, h, w) float32 on the device -> float32 output


@dataclass
class PathResult:
    path: str
    images_per_s: dict[int, float] = field(default_factory=dict)  # batch size -> img/s
    latency_ms: float = 0.0  # median at batch 1
    peak_memory_mb: float = 0.0  # CUDA: max allocated; CPU: process peak RSS
    psnr: float | None = None  # mean over the given images
    dpsnr: float | None = None  # against the eager fp32 reference
    speedup: dict[int, float] = field(default_factory=dict)
    cpu_allocator: str | None = None  # CPU only: "system" (glibc defaults) or "tuned" (allocator.py)
    error: str | None = None  # why this path could not be measured (the others still are)


def build_paths(model: Generator, device: torch.device, include_bf16_cpu: bool = False,
                include_compile: bool = False, include_openvino: bool = False) -> dict[str, Forward]:
    """The reference first, then every fast path available on ``device``."""
    model = model.eval()
    paths: dict[str, Forward] = {}
    reference = model.to(device)
    paths[REFERENCE] = _torch_path(reference, device, torch.float32, torch.contiguous_format)
    folded = fold_batchnorm(model).to(device)
    if device.type == "cpu":
        # Everything after the reference runs with the allocator tuned as Upscaler tunes it; this row shows
        # how much of each speed-up is the allocator alone.
        paths[TUNED_REFERENCE] = _torch_path(reference, device, torch.float32, torch.contiguous_format)
        cl = folded.to(memory_format=torch.channels_last)
        paths["folded-bn channels-last fp32 (default)"] = _torch_path(cl, device, torch.float32, torch.channels_last)
        onnx_model = export_onnx(model)  # one export for both ONNX runtimes
        paths["onnxruntime fp32"] = _onnx_path(OnnxRunner(onnx_model))
        if include_compile:
            paths["torch.compile (inductor) of the default"] = _compiled_path(cl, device, torch.channels_last)
        if include_openvino:  # an anchor, not a backend: the dedicated CPU runtime held to fp32
            paths["openvino fp32 (anchor)"] = _openvino_path(onnx_model)
        if include_bf16_cpu:
            bf = fold_batchnorm(model).to(device, torch.bfloat16, memory_format=torch.channels_last)
            paths["folded-bn channels-last bf16"] = _torch_path(bf, device, torch.bfloat16, torch.channels_last)
    else:
        paths["folded-bn fp32 (default)"] = _torch_path(folded, device, torch.float32, torch.contiguous_format)
        for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
            half = fold_batchnorm(model).to(device, dtype)
            paths[f"folded-bn {name}"] = _torch_path(half, device, dtype, torch.contiguous_format)
            half_cl = fold_batchnorm(model).to(device, dtype, memory_format=torch.channels_last)
            paths[f"folded-bn {name} channels-last"] = _torch_path(half_cl, device, dtype, torch.channels_last)
        if include_compile:  # as measured upstream: max-autotune, fp16, channels-last
            half_cl = fold_batchnorm(model).to(device, torch.float16, memory_format=torch.channels_last)
            paths["torch.compile max-autotune fp16 channels-last"] = _compiled_path(
                half_cl, device, torch.channels_last, torch.float16, mode="max-autotune")
        from .fused import CudaGraphed, FusedGenerator, triton_available

        if triton_available(device):
            for name, dtype in (("fp16", torch.float16), ("fp32", torch.float32)):
                fused = FusedGenerator(model, device, dtype)
                paths[f"triton fused {name}"] = lambda x, fused=fused: fused(x).float()
            # autotuned: the first call (the warm-up, untimed) times every launch setting for each block shape
            tuned = FusedGenerator(model, device, torch.float16, tune=True)
            paths["triton fused fp16, autotuned"] = lambda x: tuned(x).float()
            graphed = CudaGraphed(tuned)
            paths["triton fused fp16, autotuned + CUDA graph"] = lambda x: graphed(x.to(device)).float()
    return paths


def _torch_path(model: torch.nn.Module, device, dtype, layout) -> Forward:
    @torch.inference_mode()
    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x.to(device, dtype).contiguous(memory_format=layout)).float()

    return forward


def _compiled_path(model: torch.nn.Module, device, layout, dtype=torch.float32, mode: str | None = None) -> Forward:
    """``torch.compile`` of an inference model; with freezing, inductor treats the weights as constants
    (prepacked for oneDNN on the CPU). Compilation happens on the first call, the benchmark's warm-up."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    compiled = torch.compile(model, mode=mode)

    @torch.no_grad()
    def forward(x: torch.Tensor) -> torch.Tensor:
        return compiled(x.to(device, dtype).contiguous(memory_format=layout)).float()

    return forward


def _onnx_path(runner: OnnxRunner) -> Forward:
    return lambda x: torch.from_numpy(runner(x.numpy()))


def _openvino_path(onnx_model: bytes) -> Forward:
    """The exported ONNX graph (``export_onnx``) compiled by OpenVINO for the CPU with its precision held to
    fp32: left to itself, OpenVINO runs bf16 on CPUs with AMX or AVX-512 BF16, which is not exact. One compiled
    model per input shape, compiled on the first call of that shape (the benchmark's warm-up)."""
    try:
        import openvino as ov
    except ImportError:
        raise RuntimeError("the OpenVINO anchor needs openvino: pip install 'cxrsr[openvino]'") from None
    core = ov.Core()
    graph = core.read_model(model=onnx_model, weights=b"")  # ONNX bytes carry their weights
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": torch.get_num_threads(),
              "PERFORMANCE_HINT": "LATENCY"}
    compiled: dict[tuple[int, ...], object] = {}

    def forward(x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape)
        if shape not in compiled:
            graph.reshape({graph.inputs[0].get_any_name(): list(shape)})
            compiled[shape] = core.compile_model(graph, "CPU", config)
        request = compiled[shape]
        out = request(np.ascontiguousarray(x.numpy(), dtype=np.float32))[request.outputs[0]]
        return torch.from_numpy(np.array(out, copy=True))

    return forward


def run_benchmark(model: Generator, device: torch.device, batch_sizes=(1, 32), size: int = 256, repeats: int = 3,
                  images: list | None = None, include_bf16_cpu: bool = False, log=print,
                  include_compile: bool = False, include_openvino: bool = False) -> list[PathResult]:
    """Time every path at each batch size (median of ``repeats`` after one warm-up) and, with protocol
    ``images`` (evaluation Pairs), score each path's PSNR against the reference's. A fast path that fails
    (a compiler error, out of memory) is reported with its ``error`` and the run goes on."""
    results = []
    if device.type == "cpu" and allocator_tuned():
        log("note: the CPU allocator was already tuned in this process, so the reference runs with it too")
    for name, forward in build_paths(model, device, include_bf16_cpu, include_compile, include_openvino).items():
        if device.type == "cpu" and name != REFERENCE:
            tune_cpu_allocator()
        r = PathResult(name)
        if device.type == "cpu":
            r.cpu_allocator = "tuned" if allocator_tuned() else "system"
        try:
            _measure(r, forward, device, batch_sizes, size, repeats, images)
        except Exception as exc:  # noqa: BLE001 - one failing path (a compiler, memory) must not lose the rest
            if name == REFERENCE:
                raise
            # no partial numbers (a batch-1 time before a batch-32 failure) next to the error
            r = PathResult(name, cpu_allocator=r.cpu_allocator,
                           error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
            if device.type == "cuda":
                torch.cuda.empty_cache()
            log(f"{name}: failed: {r.error}")
        else:
            log(f"{name}: " + ", ".join(f"batch {b}: {v:.2f} img/s" for b, v in r.images_per_s.items())
                + (f", PSNR {r.psnr:.4f} dB" if r.psnr is not None else ""))
        results.append(r)
    ref = results[0]
    for r in results:
        r.speedup = {b: r.images_per_s[b] / ref.images_per_s[b] for b in r.images_per_s}
        if r.psnr is not None and ref.psnr is not None:
            r.dpsnr = r.psnr - ref.psnr
    return results


def _measure(r: PathResult, forward: Forward, device: torch.device, batch_sizes, size: int, repeats: int,
             images: list | None) -> None:
    from ..evaluation.protocol import psnr

    _reset_peak(device)
    for b in batch_sizes:
        x = torch.rand(b, 3, size, size, device=device)  # timed: the network, not host transfers
        forward(x)
        times = []
        for _ in range(repeats):
            _sync(device)
            t = time.perf_counter()
            forward(x)
            _sync(device)
            times.append(time.perf_counter() - t)
        r.images_per_s[b] = b / statistics.median(times)
        if b == 1:
            r.latency_ms = statistics.median(times) * 1000
    r.peak_memory_mb = _peak(device)
    if images:
        scores = []
        for pair in images:
            lr = torch.from_numpy(pair.lr.astype(np.float32))[None, None].expand(1, 3, -1, -1).contiguous()
            sr = forward(lr.to(device)).cpu().mean(1)[0].numpy().astype(np.float64)
            scores.append(psnr(sr, pair.hr))
        r.psnr = float(np.mean(scores))


def format_results(results: list[PathResult]) -> str:
    batches = list(results[0].images_per_s)
    head = f"{'path':42s} " + " ".join(f"{'img/s b' + str(b):>11s} {'x ref':>6s}" for b in batches)
    head += f" {'latency ms':>10s} {'peak MB':>8s} {'dPSNR dB':>9s}"
    lines = [head]
    for r in results:
        if r.error:
            lines.append(f"{r.path:42s} failed: {r.error}")
            continue
        row = f"{r.path:42s} " + " ".join(f"{r.images_per_s[b]:11.2f} {r.speedup[b]:6.2f}" for b in batches)
        dp = f"{r.dpsnr:+9.4f}" if r.dpsnr is not None else f"{'':9s}"
        lines.append(row + f" {r.latency_ms:10.1f} {r.peak_memory_mb:8.0f} {dp}")
    return "\n".join(lines)


def results_json(results: list[PathResult], device: torch.device, extra: dict) -> dict:
    out = {"device": str(device), **extra, "paths": [asdict(r) for r in results]}
    if device.type == "cuda":
        from .fused import tuned_settings

        out["triton_autotuned"] = tuned_settings()  # the launch settings chosen for each block shape
    return out


def cpu_model() -> str | None:
    """The CPU's model name as the kernel reports it (Linux), for the record of where numbers were measured."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:  # Linux: reset the process's peak resident set size (VmHWM)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def _peak(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
