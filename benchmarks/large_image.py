"""Time and peak memory of upscaling one 3000 x 3000 chest X-ray to 12000 x 12000 through the CLI code path.

    python benchmarks/large_image.py --weights PATH [--shared ../shared] [--size 3000] [--tile auto]

The input is the largest real chest X-ray in ../shared/data/cxr/covid_adult/test, centre-cropped to a square
and resized to 3000 x 3000 with Lanczos, written as an 8-bit PNG to a temporary folder. Prints wall time,
peak resident memory of this process (ru_maxrss) and the output size.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from cxrsr.cli import main as cli


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", required=True)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--size", type=int, default=3000)
    parser.add_argument("--tile", default="auto")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    candidates = sorted((args.shared / "data" / "cxr" / "covid_adult" / "test").glob("*"))
    source = max(candidates, key=lambda p: min(Image.open(p).size))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "large.png"
        with Image.open(source) as im:
            w, h = im.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            square = im.convert("L").crop((left, top, left + side, top + side))
            square.resize((args.size, args.size), Image.LANCZOS).save(src)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        rc = cli(["upscale", str(src), "-o", tmp, "--weights", args.weights, "--tile", args.tile,
                  "--device", args.device])
        elapsed = time.perf_counter() - start
        out = Path(tmp) / "large_x4.png"
        Image.MAX_IMAGE_PIXELS = None  # only to read the output's size back
        size = Image.open(out).size if out.exists() else None
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"source={source.name} input={args.size}x{args.size} output={size} rc={rc}")
    print(f"wall={elapsed:.1f} s  peak_rss={peak / 1024:.2f} GiB (before run {rss_before / 1024:.2f} GiB)  "
          f"cpus={os.cpu_count()} torch_threads={torch.get_num_threads()} tile={args.tile}")


if __name__ == "__main__":
    main()
