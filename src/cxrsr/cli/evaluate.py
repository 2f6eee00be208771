"""``cxrsr eval DIR...``: PSNR / SSIM of bicubic (and Lanczos) and each weights file, by the benchmark protocol."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..evaluation import BASELINES, evaluate, summarise, upscaler_sr
from ..evaluation.evaluate import format_table, write_csv, write_json
from ..inference import Upscaler
from ..inference.consistency import DEFAULT_STEPS
from .upscale import consistency_steps
from ..io import InputFileError
from ..weights import WeightsError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score models on folders of images (PSNR, SSIM)",
        description="Evaluate 4x super-resolution by the benchmark protocol: HR = centre square (Lanczos to "
                    "1024 if larger), LR = Pillow bicubic / 4, PSNR and SSIM on grey [0, 1] with a 4-pixel border "
                    "cropped. Bicubic is always included.",
        epilog="example:\n  cxrsr eval data/nih/test data/other/test --weights a.safetensors b.safetensors --json r.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folders", nargs="+", metavar="DIR", help="folders of HR images")
    p.add_argument("--weights", nargs="*", default=[], metavar="NAME|PATH", help="weights to evaluate")
    p.add_argument("--baselines", default="bicubic", help="comma-separated: bicubic, lanczos (default: bicubic)")
    p.add_argument("--json", type=Path, help='write {"sets": {DIR: {MODEL: {"psnr", "ssim", "n"}}}}')
    p.add_argument("--csv", type=Path, default=Path("eval-per-image.csv"),
                   help="per-image scores (default: eval-per-image.csv)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument("--consistency", type=consistency_steps, default=DEFAULT_STEPS, metavar="N",
                   help=f"back-projection steps after each model's output (default: {DEFAULT_STEPS}, as cxrsr "
                        "upscale; 0 scores the network's output as is)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    names = [b.strip() for b in args.baselines.split(",") if b.strip()]
    if "bicubic" not in names:
        names.insert(0, "bicubic")
    unknown = [b for b in names if b not in BASELINES]
    if unknown:
        print(f"cxrsr: error: unknown baseline(s) {', '.join(unknown)}; use bicubic, lanczos", file=sys.stderr)
        return 2
    models = {b: BASELINES[b] for b in names}
    try:
        for w in args.weights:
            up = Upscaler.from_pretrained(w, device=args.device, precision=args.precision, tile=None,
                                          consistency=args.consistency)
            models[Path(w).name.removesuffix(".safetensors") if Path(w).is_file() else w] = upscaler_sr(up)
    except (WeightsError, ValueError) as exc:
        print(f"cxrsr: error: {exc}", file=sys.stderr)
        return 1
    bar = tqdm(total=len(args.folders) * len(models), unit="run", desc="evaluating", disable=None)
    failed: list[InputFileError] = []

    def skip(exc: InputFileError) -> None:  # report the bad folder or image and go on with the others
        failed.append(exc)
        bar.write(f"cxrsr: error: {exc} (skipped)", file=sys.stderr)

    try:
        scores = evaluate(args.folders, models, progress=lambda *_: bar.update(), on_error=skip)
    finally:
        bar.close()
    if not scores:
        print("cxrsr: error: nothing to evaluate: no image could be read", file=sys.stderr)
        return 1
    summary = summarise(scores)
    print(format_table(summary))
    write_csv(scores, args.csv)
    if args.json:
        write_json(summary, args.json)
    if failed:
        print(f"cxrsr: {len(failed)} folder(s) or image(s) skipped; the table covers the rest", file=sys.stderr)
        return 1
    return 0
