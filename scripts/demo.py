"""Demo: upscale a real chest X-ray (pydicom-data's RG1_UNCR.dcm, an adult chest CR, MONOCHROME1, 15-bit)
and write the 4x result as a derived DICOM plus a side-by-side comparison (input | bicubic x4 | cxrsr x4) of
a zoomed crop as PNG.

    python scripts/demo.py --out demo-output [--weights NAME|PATH] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cxrsr import Upscaler
from cxrsr.inference.files import upscale_file
from cxrsr.io import read_image
from cxrsr.weights import available_weights, convert_checkpoint


def find_weights(requested: str | None, shared: Path, out: Path) -> str:
    if requested:
        return requested
    if available_weights():
        return available_weights()[0] if "cxr-fidelity" not in available_weights() else "cxr-fidelity"
    upstream = shared / "weights" / "swift_srgan_4x.pth.tar"
    if upstream.is_file():
        converted = out / "swift_srgan_4x.safetensors"
        convert_checkpoint(upstream, converted, source="Swift-SRGAN v0.1 4x (DIV2K + Flickr2K)")
        print(f"no shipped weights in this version: using the upstream 4x weights, converted to {converted}")
        return str(converted)
    sys.exit("no weights: this version ships none and --shared holds no weights/swift_srgan_4x.pth.tar; "
             "pass --weights PATH")


def to_8bit(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    lo, hi = np.percentile(a, 0.5), np.percentile(a, 99.5)
    return (np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1) * 255).round().astype(np.uint8)


def comparison(lr: np.ndarray, sr: np.ndarray, scale: int, crop: int = 160) -> Image.Image:
    h, w = lr.shape
    y, x = int(h * 0.35), int(w * 0.30)  # a crop over the right lung and ribs
    lr_crop = lr[y : y + crop, x : x + crop]
    size = crop * scale
    lr8 = Image.fromarray(to_8bit(lr_crop))
    panels = [
        ("input (nearest)", lr8.resize((size, size), Image.NEAREST)),
        ("bicubic x4", lr8.resize((size, size), Image.BICUBIC)),
        ("cxrsr x4", Image.fromarray(to_8bit(sr[y * scale : (y + crop) * scale, x * scale : (x + crop) * scale]))),
    ]
    canvas = Image.new("L", (size * 3 + 20, size + 24), 0)
    draw = ImageDraw.Draw(canvas)
    for i, (title, panel) in enumerate(panels):
        canvas.paste(panel, (i * (size + 10), 24))
        draw.text((i * (size + 10) + 4, 6), title, fill=255)
    return canvas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--weights", default=None)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from pydicom.data import get_testdata_file

    src = Path(get_testdata_file("RG1_UNCR.dcm"))
    upscaler = Upscaler.from_pretrained(find_weights(args.weights, args.shared, args.out), device=args.device)
    image = read_image(src)
    print(f"input: {src.name} {image.array.shape[1]}x{image.array.shape[0]} DICOM, "
          f"weights {upscaler.weights_name}, device {upscaler.device}")
    start = time.perf_counter()
    dst = upscale_file(upscaler, src, args.out / "RG1_UNCR_x4.dcm")
    print(f"wrote {dst} in {time.perf_counter() - start:.1f} s")
    sr = read_image(dst).array
    cmp_path = args.out / "RG1_UNCR_comparison.png"
    comparison(image.array, sr, upscaler.scale).save(cmp_path)
    print(f"wrote {cmp_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
