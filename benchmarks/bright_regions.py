"""Do models keep the brightest parts of a radiograph? PSNR and the mean error where the truth is near white.

    python benchmarks/bright_regions.py --weights cxr-fidelity runs/fid/best-ema.safetensors ... \\
        [--images ../shared/data/cxr/nih/test] [--threshold 0.95] [--json out.json]

For each model, by the benchmark protocol (cxrsr.evaluation): the mean PSNR over the folder, the mean PSNR over
the images of which at least ``--min-fraction`` of pixels are near white (HR above ``--threshold``: dense soft
tissue, overexposed or strongly processed films), and the mean signed error (SR - HR) over those near-white
pixels. A model that darkens near-white areas loses several dB on exactly those images while its mean over a
validation set without them can still rise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cxrsr.evaluation.evaluate import list_images, upscaler_sr
from cxrsr.evaluation.protocol import BORDER, load_pair, psnr
from cxrsr.inference import Upscaler

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", required=True, metavar="NAME|PATH")
    p.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "cxr" / "nih" / "test")
    p.add_argument("--threshold", type=float, default=0.95)
    p.add_argument("--min-fraction", type=float, default=0.2)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    pairs = [load_pair(f) for f in list_images(args.images)]
    crop = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    bright = [i for i, pair in enumerate(pairs) if (pair.hr[crop] > args.threshold).mean() >= args.min_fraction]
    print(f"{args.images}: {len(pairs)} images, {len(bright)} with at least {args.min_fraction:.0%} of pixels "
          f"above {args.threshold}")
    print("| model | PSNR, all | PSNR, the bright images | mean SR - HR on near-white pixels |")
    print("| --- | --- | --- | --- |")
    rows = {}
    for weights in args.weights:
        # the networks alone (consistency=0): training recipes are compared without back-projection
        model = upscaler_sr(Upscaler.from_pretrained(weights, device="cpu", tile=None, consistency=0))
        scores, errors, counts = [], 0.0, 0
        for pair in pairs:
            sr = np.clip(model(pair.lr), 0.0, 1.0)  # the SR that cxrsr.evaluation scores
            scores.append(psnr(sr, pair.hr))
            white = pair.hr[crop] > args.threshold
            errors += float((sr[crop] - pair.hr[crop])[white].sum())
            counts += int(white.sum())
        row = {"psnr": float(np.mean(scores)), "psnr_bright": float(np.mean([scores[i] for i in bright])),
               "bias_near_white": errors / max(counts, 1)}
        rows[weights] = row
        print(f"| {weights} | {row['psnr']:.2f} | {row['psnr_bright']:.2f} | {row['bias_near_white']:+.4f} |",
              flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"images": str(args.images), "bright_images": [pairs[i].name for i in bright],
                                         "threshold": args.threshold, "models": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
