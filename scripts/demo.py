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
from cxrsr.weights import DEFAULT_WEIGHTS, available_weights, convert_checkpoint


def find_weights(requested: list[str] | None, shared: Path, out: Path) -> list[str]:
    """The weights to show: those asked for, else the shipped chest X-ray models (cxr-fidelity first), else the
    upstream natural-image checkpoint from ../shared (converted to safetensors) where that folder exists."""
    if requested:
        return requested
    shipped = available_weights()
    if shipped:
        return [DEFAULT_WEIGHTS] + [w for w in shipped if w != DEFAULT_WEIGHTS] if DEFAULT_WEIGHTS in shipped else shipped
    upstream = shared / "weights" / "swift_srgan_4x.pth.tar"
    if upstream.is_file():
        converted = out / "swift_srgan_4x.safetensors"
        convert_checkpoint(upstream, converted, source="Swift-SRGAN v0.1 4x (DIV2K + Flickr2K)")
        print(f"no shipped weights in this installation: using the upstream 4x weights, converted to {converted}")
        return [str(converted)]
    sys.exit("no weights: this installation ships none and --shared holds no weights/swift_srgan_4x.pth.tar; "
             "pass --weights PATH")


def crop_box(shape: tuple[int, int], crop: int) -> tuple[int, int]:
    h, w = shape
    return int(h * 0.35), int(w * 0.30)  # a crop over the right lung and ribs


def upscale_crop(upscaler: Upscaler, lr: np.ndarray, crop: int, context: int = 24) -> np.ndarray:
    """The x4 result of the crop, computed on the crop plus ``context`` pixels around it (as the tiler does)."""
    y, x = crop_box(lr.shape, crop)
    top, left = max(0, y - context), max(0, x - context)
    lo, hi = float(lr.min()), float(lr.max())  # the whole image's range, as when it is upscaled whole
    region = (lr[top : y + crop + context, left : x + crop + context].astype(np.float32) - lo) / max(hi - lo, 1e-12)
    s = upscaler.scale
    sr = upscaler.upscale(region).astype(np.float64) * (hi - lo) + lo
    return sr[(y - top) * s : (y - top + crop) * s, (x - left) * s : (x - left + crop) * s]


def comparison(lr: np.ndarray, results: list[tuple[str, np.ndarray]], scale: int, crop: int = 160) -> Image.Image:
    """input (nearest) | bicubic | each model, on the same crop, one display window for all panels."""
    y, x = crop_box(lr.shape, crop)
    lr_crop = lr[y : y + crop, x : x + crop].astype(np.float64)
    lo, hi = np.percentile(lr_crop, 0.5), np.percentile(lr_crop, 99.5)

    def to_8bit(a: np.ndarray) -> Image.Image:
        return Image.fromarray((np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1) * 255).round().astype(np.uint8))

    size = crop * scale
    bicubic = np.asarray(Image.fromarray(lr_crop.astype(np.float32), "F").resize((size, size), Image.BICUBIC))
    panels = [("input (nearest)", to_8bit(lr_crop).resize((size, size), Image.NEAREST)),
              ("bicubic x4", to_8bit(bicubic))] + [(f"{name} x4", to_8bit(sr.astype(np.float64))) for name, sr in results]
    canvas = Image.new("L", (len(panels) * (size + 10) - 10, size + 24), 0)
    draw = ImageDraw.Draw(canvas)
    for i, (title, panel) in enumerate(panels):
        canvas.paste(panel, (i * (size + 10), 24))
        draw.text((i * (size + 10) + 4, 6), title, fill=255)
    return canvas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--weights", nargs="+", default=None,
                        help="weights names or files; the first writes the DICOM (default: the shipped models)")
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from pydicom.data import get_testdata_file

    src = Path(get_testdata_file("RG1_UNCR.dcm"))
    weights = find_weights(args.weights, args.shared, args.out)
    upscaler = Upscaler.from_pretrained(weights[0], device=args.device)
    image = read_image(src)
    print(f"input: {src.name} {image.array.shape[1]}x{image.array.shape[0]} DICOM, "
          f"weights {upscaler.weights_name}, device {upscaler.device}")
    start = time.perf_counter()
    dst = upscale_file(upscaler, src, args.out / "RG1_UNCR_x4.dcm")
    print(f"wrote {dst} in {time.perf_counter() - start:.1f} s")
    crop = 160
    y, x = crop_box(image.array.shape, crop)
    s = upscaler.scale
    sr = read_image(dst).array[y * s : (y + crop) * s, x * s : (x + crop) * s]
    results = [(upscaler.weights_name, sr)]
    for other in weights[1:]:
        extra = Upscaler.from_pretrained(other, device=args.device)
        results.append((extra.weights_name, upscale_crop(extra, image.array, crop)))
    cmp_path = args.out / "RG1_UNCR_comparison.png"
    comparison(image.array, results, s, crop).save(cmp_path)
    print(f"wrote {cmp_path} (input | bicubic | {' | '.join(name for name, _ in results)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
