"""``cxrsr train`` and ``cxrsr export-weights``: the fine-tuning recipe and exporting its generator."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..weights import WeightsError
from .outputs import output_refused


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune Swift-SRGAN on chest X-rays",
        description="Train with a TOML/JSON config plus overrides. Multi-GPU: "
                    "torchrun --nproc_per_node N -m cxrsr train ...",
        epilog="example:\n  cxrsr train --config configs/nih_fidelity.toml --init swift_srgan_4x.pth.tar "
               "--set run.steps_pretrain=2000 --out runs/a\n  cxrsr train --out runs/a --resume",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="TOML or JSON config (sections data, augment, loss, optim, run)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (repeatable), e.g. --set optim.lr_g=1e-4")
    p.add_argument("--out", help="run directory (run.out)")
    p.add_argument("--init", help="generator weights to start from (run.init), e.g. the upstream 4x checkpoint")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (run.device)")
    p.set_defaults(run=run_train)

    e = sub.add_parser("export-weights", help="write a run's generator as safetensors",
                       description="Export the generator of a training run in the package's weight format: by "
                                   "default the EMA weights of the best checkpoint (of the last one when the run "
                                   "was never validated).")
    e.add_argument("run_dir", type=Path, metavar="RUN")
    e.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.safetensors")
    e.add_argument("--checkpoint", default="best.pt", help="best.pt (default) or last.pt")
    e.add_argument("--raw", action="store_true", help="export the raw generator instead of its EMA")
    e.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    e.add_argument("--blend-with", metavar="NAME|PATH",
                   help="interpolate towards these weights (same architecture; normally the run's start)")
    e.add_argument("--blend", type=float, default=1.0, metavar="F",
                   help="with --blend-with: F x the run's weights + (1 - F) x the others (0 < F <= 1)")
    e.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="extra metadata to store in the file (repeatable), e.g. --meta description='...'")
    e.set_defaults(run=run_export)


def run_train(args: argparse.Namespace) -> int:
    from ..training import load_config, train

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"run.out={json.dumps(args.out)}")
    if args.init:
        overrides.append(f"run.init={json.dumps(args.init)}")
    if args.device:
        overrides.append(f"run.device={json.dumps(args.device)}")
    config_path = args.config
    if args.resume and config_path is None and args.out and (Path(args.out) / "config.json").exists():
        config_path = Path(args.out) / "config.json"  # resume with the recorded configuration
    try:
        cfg = load_config(config_path, overrides)
        summary = train(cfg, resume=args.resume)
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as exc:
        print(f"cxrsr: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    best = summary["best_val_psnr"]
    scored = f"best val PSNR {best:.3f} dB" if math.isfinite(best) else "not validated (no data.val)"
    print(f"trained to step {summary['steps']} in {summary['seconds']:.0f} s; {scored}; run in {cfg.run.out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..training import export_generator

    if args.output.suffix != ".safetensors":
        print(f"cxrsr: error: {args.output}: output name must end in .safetensors", file=sys.stderr)
        return 2
    if output_refused(args.output, args.overwrite):
        return 1
    if not (args.run_dir / "last.pt").exists():
        print(f"cxrsr: error: {args.run_dir}: no training run (last.pt missing)", file=sys.stderr)
        return 1
    extra = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            print(f"cxrsr: error: --meta {item!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        extra[key.strip()] = value
    if args.blend != 1.0 and args.blend_with is None:
        print("cxrsr: error: --blend needs --blend-with", file=sys.stderr)
        return 2
    try:
        path = export_generator(args.run_dir, args.output, use_ema=not args.raw, checkpoint=args.checkpoint,
                                blend_with=args.blend_with, blend=args.blend, **extra)
    except (ValueError, WeightsError) as exc:
        print(f"cxrsr: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0
