"""Figure for the README: a real chest CT slice (pydicom's CT_small.dcm, 128 x 128) upscaled 4x through the
DICOM path with the lung window, shown as input (nearest) | bicubic | cxrsr, all in the lung window.

    python scripts/ct_figure.py --weights PATH --out docs/images/ct_small_lung.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageDraw
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from cxrsr import Upscaler
from cxrsr.inference.files import upscale_file
from cxrsr.io.dicom import WINDOWS


def window(hu: np.ndarray, centre: float, width: float) -> Image.Image:
    return Image.fromarray((np.clip((hu - centre + width / 2) / width, 0, 1) * 255).round().astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/images/ct_small_lung.png"))
    args = parser.parse_args()
    src = Path(get_testdata_file("CT_small.dcm"))
    upscaler = Upscaler.from_pretrained(args.weights, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        dst = upscale_file(upscaler, src, Path(tmp) / "ct_x4.dcm", window="lung")
        out = pydicom.dcmread(dst)
        hu_sr = apply_modality_lut(out.pixel_array, out).astype(np.float64)
    ds = pydicom.dcmread(src)
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    centre, width = WINDOWS["lung"]
    size = hu_sr.shape[0]
    lr = window(hu, centre, width)
    panels = [("input 128x128 (nearest)", lr.resize((size, size), Image.NEAREST)),
              ("bicubic x4", window(np.asarray(Image.fromarray(hu.astype(np.float32)).resize((size, size), Image.BICUBIC)), centre, width)),
              ("cxrsr x4 (DICOM out, HU)", window(hu_sr, centre, width))]
    canvas = Image.new("L", (size * 3 + 20, size + 24), 0)
    draw = ImageDraw.Draw(canvas)
    for i, (title, panel) in enumerate(panels):
        canvas.paste(panel, (i * (size + 10), 24))
        draw.text((i * (size + 10) + 4, 6), title, fill=255)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out, optimize=True)
    print(f"wrote {args.out}; HU range in {hu.min():.0f}..{hu.max():.0f}, out {hu_sr.min():.0f}..{hu_sr.max():.0f}")


if __name__ == "__main__":
    main()
