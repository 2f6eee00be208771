"""How far tiled upscaling is from upscaling the whole image at once, on real chest X-rays.

    python benchmarks/tiling_agreement.py --weights PATH [--images ../shared/data/cxr/nih/test] [--n 5]

Each image is the protocol's 256 x 256 LR of a nih/test X-ray (float in [0, 1]). It is upscaled whole and in
tiles of 64, 96 and 128 input pixels (24 pixels of context, 16-pixel blend, as `--tile N`), on the CPU with
the default path. Prints, per tile size, the largest absolute difference over all images (in units of the
value range) and the PSNR of tiled against whole. Then, the edge effect that the context is there to remove:
the left half of each LR upscaled alone against the whole image, as the largest difference at a given distance
(in LR pixels) from the half's cut edge.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cxrsr import Upscaler
from cxrsr.data.splits import list_image_files
from cxrsr.evaluation.protocol import load_pair, psnr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", required=True)
    parser.add_argument("--images", type=Path, default=Path("../shared/data/cxr/nih/test"))
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--tiles", type=int, nargs="+", default=[64, 96, 128])
    args = parser.parse_args()

    up = Upscaler.from_pretrained(args.weights, device="cpu", precision="fp32")
    files = list_image_files(args.images)[: args.n]
    distances = [0, 2, 4, 8, 12, 16, 20, 24]
    edge = {d: 0.0 for d in distances}
    worst = {t: 0.0 for t in args.tiles}
    lowest_psnr = {t: np.inf for t in args.tiles}
    for f in files:
        lr = load_pair(f).lr.astype(np.float32)
        whole = up.upscale_array(lr, tile=None).astype(np.float64)
        for t in args.tiles:
            tiled = up.upscale_array(lr, tile=t).astype(np.float64)
            worst[t] = max(worst[t], float(np.abs(tiled - whole).max()))
            lowest_psnr[t] = min(lowest_psnr[t], psnr(tiled, whole, border=0))
        cut = lr.shape[1] // 2
        half = up.upscale_array(lr[:, :cut], tile=None).astype(np.float64)
        s = up.scale
        for d in distances:  # output columns of LR column cut - 1 - d
            cols = slice((cut - 1 - d) * s, (cut - d) * s)
            edge[d] = max(edge[d], float(np.abs(half[:, cols] - whole[:, cols]).max()))
    print(f"{len(files)} images from {args.images}, LR {lr.shape[1]}x{lr.shape[0]}")
    for t in args.tiles:
        print(f"tile {t:4d}: max |tiled - whole| = {worst[t]:.2e} of the range, lowest PSNR(tiled, whole) = "
              f"{lowest_psnr[t]:.1f} dB")
    print("edge effect without context, max |half alone - whole| by LR pixels from the cut: "
          + ", ".join(f"{d}: {edge[d]:.1e}" for d in distances))


if __name__ == "__main__":
    main()
