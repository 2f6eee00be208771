"""``cxrsr convert IN OUT``: an upstream .pth / .pth.tar checkpoint to safetensors with metadata."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..weights import WeightsError, convert_checkpoint
from .outputs import output_refused


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert an upstream checkpoint to safetensors",
                       description="Convert a Swift-SRGAN .pth / .pth.tar checkpoint (read with weights_only=True) "
                                   "to a .safetensors file with metadata (scale, channels, blocks, source).")
    p.add_argument("input", type=Path, help="upstream checkpoint (.pth, .pth.tar, .pt or .safetensors)")
    p.add_argument("output", type=Path, help="output .safetensors file")
    p.add_argument("--source", help="text stored as the 'source' metadata (default: the input file name)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.output.suffix != ".safetensors":
        print(f"cxrsr: error: {args.output}: output name must end in .safetensors", file=sys.stderr)
        return 2
    if output_refused(args.output, args.overwrite, args.input):
        return 1
    try:
        convert_checkpoint(args.input, args.output, source=args.source)
    except WeightsError as exc:
        print(f"cxrsr: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0
