"""Where does a model's squared error come from? Its share by the truth's grey level and by local detail.

    python benchmarks/error_by_intensity.py --images ../shared/data/cxr/kermany_pediatric/test \\
        --weights cxr-fidelity CANDIDATE ... [--json out.json]

For each model, by the benchmark protocol (cxrsr.evaluation, 4-pixel border cropped): the summed squared error
over the folder, split into bins of the HR grey level and, separately, into bins of the HR's local gradient
magnitude (flat areas against edges), each given as mean squared error x 1e6 and as the mean signed error
(SR - HR) x 1e3 in the bin. Two models' rows side by side show which pixels a fine-tune gained or lost on: a
folder-wide PSNR change of -0.04 dB is a 1 % rise in squared error, and this says where that 1 % is.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cxrsr.evaluation.evaluate import list_images, upscaler_sr
from cxrsr.evaluation.protocol import BORDER, load_pair
from cxrsr.inference import Upscaler

LEVELS = [0.0, 0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 1.0001]
GRADIENTS = [0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 10.0]  # |grad HR| per pixel, central differences


def _bins(values: np.ndarray, edges: list[float]) -> np.ndarray:
    return np.clip(np.digitize(values, edges) - 1, 0, len(edges) - 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", required=True, metavar="NAME|PATH")
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    pairs = [load_pair(f) for f in list_images(args.images)]
    crop = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    level_bins, grad_bins = [], []
    for pair in pairs:
        hr = pair.hr[crop].astype(np.float64)
        gy, gx = np.gradient(pair.hr.astype(np.float64))
        level_bins.append(_bins(hr, LEVELS).ravel())
        grad_bins.append(_bins(np.hypot(gx, gy)[crop], GRADIENTS).ravel())
    results = {}
    for weights in args.weights:
        # the networks alone (consistency=0): training recipes are compared without back-projection
        model = upscaler_sr(Upscaler.from_pretrained(weights, device="cpu", tile=None, consistency=0))
        sq = {"level": np.zeros(len(LEVELS) - 1), "gradient": np.zeros(len(GRADIENTS) - 1)}
        signed = {k: np.zeros_like(v) for k, v in sq.items()}
        count = {k: np.zeros_like(v) for k, v in sq.items()}
        for pair, lb, gb in zip(pairs, level_bins, grad_bins):
            err = (np.clip(model(pair.lr), 0.0, 1.0)[crop].astype(np.float64) - pair.hr[crop]).ravel()
            for key, b in (("level", lb), ("gradient", gb)):
                sq[key] += np.bincount(b, err * err, len(sq[key]))
                signed[key] += np.bincount(b, err, len(sq[key]))
                count[key] += np.bincount(b, minlength=len(sq[key]))
        results[weights] = {k: {"pixels": count[k].tolist(),
                                "mse_x1e6": (sq[k] / np.maximum(count[k], 1) * 1e6).tolist(),
                                "bias_x1e3": (signed[k] / np.maximum(count[k], 1) * 1e3).tolist(),
                                "share_of_error": (sq[k] / sq[k].sum()).tolist()} for k in sq}
    for key, edges in (("level", LEVELS), ("gradient", GRADIENTS)):
        names = [f"{lo:g}-{hi:g}" if hi < 10 else f">{lo:g}" for lo, hi in zip(edges, edges[1:])]
        first = results[args.weights[0]][key]
        total = sum(first["pixels"])
        print(f"\nby HR {key} ({args.images}); share of pixels: "
              + ", ".join(f"{n} {c / total:.1%}" for n, c in zip(names, first["pixels"])))
        print("| model | " + " | ".join(names) + " |  (MSE x1e6 / bias x1e3)")
        print("| --- |" + " --- |" * len(names))
        for weights, row in results.items():
            cells = [f"{m:.2f} / {b:+.2f}" for m, b in zip(row[key]["mse_x1e6"], row[key]["bias_x1e3"])]
            print(f"| {weights} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"images": str(args.images), "levels": LEVELS, "gradients": GRADIENTS,
                                         "models": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
