"""More shifted copies of nih/val, each imitating one way other hospitals' radiographs differ from NIH's, to look
for a validation set that predicts a model's loss on them (the test sets play no part in choosing a model).

    python benchmarks/domain_copies.py --out runs/study3
    cxrsr eval runs/study3/nih-val-jpeg50 runs/study3/nih-val-jpeg75 runs/study3/nih-val-noise \\
        runs/study3/nih-val-blur runs/study3/nih-val-down15 --weights cxr-fidelity CANDIDATE ...

  nih-val-jpeg50, -jpeg75: each image stored as a JPEG of quality 50 or 75 (both other test sets are JPEGs);
  nih-val-noise:  Gaussian noise of sigma 0.01 added to the HR (seed 0), i.e. a noisier detector;
  nih-val-blur:   a Gaussian blur of sigma 0.8 pixel, i.e. a softer detector or processing chain;
  nih-val-down15: Lanczos to 683x683, anatomy at 1.5 times the pixel pitch, as the protocol makes of a radiograph
                  stored at about 1500 pixels (the paediatric test images are 1028-1915 pixels on the short side);
  nih-val-usm2, -usm8: an unsharp mask (image + amount x (image - Gaussian blur)) of sigma 2 px, amount 0.8 and of
                  sigma 8 px, amount 0.6, i.e. the edge enhancement of another processing chain.
The PNG copies are 16-bit. When all seven exist, nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

# as in augment_ablation.py, which is not imported for it: that would load torch and cxrsr.training
CXR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cxr"
USM = {"usm2": (2, 0.8), "usm8": (8, 0.6)}  # unsharp mask: Gaussian sigma in pixels, amount


def _save_png16(image: np.ndarray, path: Path) -> None:
    """As augment_ablation's, but rounding halves up: the copies RESULTS.md scored were written this way, and
    the blurred and down-scaled ones have exact halves (augment_ablation's rounds them to even)."""
    Image.fromarray((np.clip(image, 0.0, 1.0) * 65535 + 0.5).astype(np.uint16)).save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--val", type=Path, default=CXR / "nih" / "val")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    names = ["jpeg50", "jpeg75", "noise", "blur", "down15", *USM]
    folders = {name: args.out / f"nih-val-{name}" for name in names}
    if all(folder.is_dir() and any(folder.iterdir()) for folder in folders.values()):
        print("copies exist:", *folders.values())
        return
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for path in sorted(args.val.glob("*.png")):
        image = Image.open(path).convert("L")
        for quality in (50, 75):
            image.save(folders[f"jpeg{quality}"] / f"{path.stem}.jpg", quality=quality)
        grey = np.asarray(image, dtype=np.float32) / 255
        _save_png16(grey + rng.normal(0, 0.01, grey.shape), folders["noise"] / f"{path.stem}.png")
        _save_png16(gaussian_filter(grey, 0.8), folders["blur"] / f"{path.stem}.png")
        small = image.convert("F").resize((683, 683), Image.LANCZOS)
        _save_png16(np.asarray(small, dtype=np.float32) / 255, folders["down15"] / f"{path.stem}.png")
        fine = np.asarray(image, dtype=np.float64) / 255
        for name, (sigma, amount) in USM.items():
            _save_png16(fine + amount * (fine - gaussian_filter(fine, sigma)), folders[name] / f"{path.stem}.png")
    print("wrote", *folders.values())


if __name__ == "__main__":
    main()
