"""The model card's figure: on a real chest X-ray from a test set, the ground truth, bicubic, each shipped model,
and each model's difference from bicubic (blue: darker than bicubic, red: brighter), on a zoomed crop.

    python scripts/model_card_figure.py --image ../shared/data/cxr/nih/test/00000061_012.png \\
        --out docs/images/difference_map.png

LR is made by the benchmark protocol (HR = centre square at 1024, Pillow bicubic / 4), so the ground truth is
known; the difference maps share one scale, printed in the figure (fraction of the grey range).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cxrsr import Upscaler
from cxrsr.data.degrade import bicubic_upscale
from cxrsr.evaluation import load_pair
from cxrsr.weights import available_weights


def grey(a: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8)).convert("RGB")


def diverging(d: np.ndarray, limit: float) -> Image.Image:
    """Blue (negative) - white (0) - red (positive), saturating at +-limit."""
    t = np.clip(d / limit, -1, 1)
    r = np.where(t > 0, 1.0, 1.0 + t)
    g = 1.0 - np.abs(t)
    b = np.where(t < 0, 1.0, 1.0 - t)
    return Image.fromarray((np.stack([r, g, b], -1) * 255).round().astype(np.uint8))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--weights", nargs="+", default=None, help="default: every shipped model")
    p.add_argument("--crop", type=int, default=256, help="HR pixels shown per side")
    p.add_argument("--at", type=float, nargs=2, default=(0.30, 0.22), metavar=("Y", "X"),
                   help="top-left of the crop as fractions of the image")
    p.add_argument("--limit", type=float, default=0.03, help="difference at full colour (fraction of the range)")
    p.add_argument("--out", type=Path, default=Path("docs/images/difference_map.png"))
    args = p.parse_args()
    pair = load_pair(args.image)
    bic = bicubic_upscale(pair.lr, 4)
    h, w = pair.hr.shape
    y, x, c = int(h * args.at[0]), int(w * args.at[1]), args.crop

    def crop(a: np.ndarray) -> np.ndarray:
        return a[y : y + c, x : x + c]

    panels = [("ground truth", grey(crop(pair.hr))), ("bicubic x4", grey(crop(bic)))]
    for name in args.weights or available_weights():
        up = Upscaler.from_pretrained(name, device="cpu", tile=None)
        sr = np.clip(up.upscale_array(pair.lr.astype(np.float32), tile=None).astype(np.float64), 0, 1)
        panels.append((f"{up.weights_name} x4", grey(crop(sr))))
        panels.append((f"{up.weights_name} - bicubic", diverging(crop(sr - bic), args.limit)))
    scale = 2  # each HR pixel drawn 2x2, so fine structure stays visible
    side = c * scale
    canvas = Image.new("RGB", (len(panels) * (side + 8) - 8, side + 40), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (title, im) in enumerate(panels):
        canvas.paste(im.resize((side, side), Image.NEAREST), (i * (side + 8), 22))
        draw.text((i * (side + 8) + 4, 5), title, fill=(255, 255, 255))
    draw.text((4, side + 25), f"{args.image.name}, HR crop {c}x{c} at ({x}, {y}); difference colour scale "
              f"+-{args.limit:g} of the grey range (blue: darker than bicubic, red: brighter)", fill=(255, 255, 255))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
