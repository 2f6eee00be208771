"""``cxrsr export --format onnx -o FILE``: the generator as ONNX with dynamic batch, height and width."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ..io.atomic import atomic_path
from ..weights import WeightsError, load_generator, resolve_weights
from .outputs import output_refused


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the network (ONNX)",
                       description="Export the generator (BatchNorm folded) to ONNX, opset 17, with dynamic batch, "
                                   "height and width, and check it against PyTorch at two input sizes.")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    p.add_argument("--weights", default=None, metavar="NAME|PATH")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.onnx import OnnxRunner, export_onnx

    try:
        weights = resolve_weights(args.weights)
        model, _ = load_generator(weights)
    except WeightsError as exc:
        print(f"cxrsr: error: {exc}", file=sys.stderr)
        return 1
    if output_refused(args.output, args.overwrite, weights):
        return 1
    data = export_onnx(model)
    runner = OnnxRunner(data)
    worst = 0.0
    rng = np.random.default_rng(0)
    for h, w in ((32, 48), (71, 64)):
        x = rng.random((1, model.config.in_channels, h, w), dtype=np.float32)
        with torch.no_grad():
            ref = model.eval()(torch.from_numpy(x)).numpy()
        worst = max(worst, float(np.abs(runner(x) - ref).max()))
    if not worst < 1e-4:  # nothing is written: a model that disagrees with PyTorch is no export
        print(f"cxrsr: error: the ONNX model differs from PyTorch by {worst:.2e} (limit 1e-4); "
              f"{args.output} not written", file=sys.stderr)
        return 1
    with atomic_path(args.output) as tmp:
        tmp.write_bytes(data)
    print(f"wrote {args.output}; max abs difference from PyTorch at 32x48 and 71x64: {worst:.2e}")
    return 0
