"""Short ablation of the augmentations beyond the seed paper's (scale and intensity, cxrsr.data.augment), for
images from other hospitals: one short training stretch per variant, all from the same weights with the same
seed and steps, then the benchmark protocol on nih/val and on two shifted copies of it made here.

    python benchmarks/augment_ablation.py --init W.safetensors --steps 800 --out runs/ablation \\
        --json benchmarks/results/augment-ablation.json

The benchmark protocol forbids tuning on a test folder, so the other hospitals' test sets play no part in the
choice. Instead, what differs about them is imitated on the validation images:
  nih/val-half:  each nih/val image Lanczos-downscaled to 512x512 (the protocol then keeps 512 as HR), i.e.
                 anatomy at twice the pixel pitch, as in radiographs stored larger than NIH's and resized;
  nih/val-gamma: each nih/val image with a grey-level curve changed (gamma 0.67 or 1.5, alternately), as from
                 another detector or processing chain.
Rule, fixed before the run: a variant is kept if it raises the mean of the two shifted sets without lowering
nih/val by more than 0.02 dB against the paper's augmentations alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from cxrsr.data.degrade import resize_float
from cxrsr.evaluation import BASELINES, evaluate, load_grey, summarise, upscaler_sr
from cxrsr.evaluation.evaluate import format_table, list_images
from cxrsr.inference import Upscaler
from cxrsr.training import export_generator, load_config, train

CXR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cxr"
INTENSITY = ["augment.gamma_p=0.3", "augment.contrast_p=0.3", "augment.brightness_p=0.3", "augment.invert_p=0.1"]
SCALE = ["augment.scale_p=0.5", "augment.scale_min=0.35"]
VARIANTS = {"paper": [], "intensity": INTENSITY, "scale": SCALE, "scale+intensity": SCALE + INTENSITY}


def shifted_copies(val: Path, out: Path) -> list[str]:
    """Write nih/val-half and nih/val-gamma (16-bit PNG) under ``out`` once; return their folders."""
    half, gamma = out / "nih-val-half", out / "nih-val-gamma"
    for folder in (half, gamma):
        folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(list_images(val)):
        image = load_grey(path)
        if not (half / f"{path.stem}.png").exists():
            small = resize_float(image, 512, 512, Image.LANCZOS)
            _save_png16(small, half / f"{path.stem}.png")
        if not (gamma / f"{path.stem}.png").exists():
            curved = np.power(image, 0.67 if i % 2 == 0 else 1.5)
            _save_png16(curved, gamma / f"{path.stem}.png")
    return [str(half), str(gamma)]


def bright_copy(val: Path, out: Path, fraction: float = 0.2, level: float = 0.95) -> str:
    """Write nih/val-bright (16-bit PNG) under ``out`` once; return its folder.

    Each image goes through the gamma curve that puts its brightest ``fraction`` of pixels above ``level``
    (dense soft tissue, overexposed or strongly processed films: nih/test holds such images, nih/val none),
    so that a recipe which darkens near-white areas shows it on a validation set.
    """
    bright = out / "nih-val-bright"
    bright.mkdir(parents=True, exist_ok=True)
    for path in list_images(val):
        if (bright / f"{path.stem}.png").exists():
            continue
        image = np.clip(load_grey(path), 0.0, 1.0)
        top = float(np.quantile(image, 1.0 - fraction))
        g = min(1.0, np.log(level) / np.log(min(max(top, 1e-6), 1.0 - 1e-6)))
        curved = np.power(image, g)
        _save_png16(curved, bright / f"{path.stem}.png")
    return str(bright)


def _save_png16(image: np.ndarray, path: Path) -> None:
    Image.fromarray((np.clip(image, 0.0, 1.0) * 65535).round().astype(np.uint16)).save(path)


def verdict(summary: dict, sets: list[str]) -> str:
    val, shifted = sets[0], sets[1:]
    base = summary[val]["paper"]["psnr"]
    base_shift = np.mean([summary[s]["paper"]["psnr"] for s in shifted])
    lines = ["variant: nih/val change, shifted-sets change (dB, against the paper's augmentations) -> verdict"]
    for name in summary[val]:
        if name in ("bicubic", "start", "paper"):
            continue
        d_val = summary[val][name]["psnr"] - base
        d_shift = float(np.mean([summary[s][name]["psnr"] for s in shifted]) - base_shift)
        keep = d_val >= -0.02 and d_shift > 0
        lines.append(f"{name}: {d_val:+.3f}, {d_shift:+.3f} -> {'keep' if keep else 'drop'}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", required=True, help="weights every variant starts from")
    p.add_argument("--config", default="configs/cxr_fidelity_cpu_v1.toml")  # the paper's augmentations
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--val", type=Path, default=CXR / "nih" / "val")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    models = {"bicubic": BASELINES["bicubic"]}
    runs = {}
    for name in args.variants:
        out = args.out / name.replace("+", "-")
        weights = out.with_suffix(".safetensors")
        if not weights.exists():  # a finished variant is not trained again
            cfg = load_config(args.config, [f'run.out="{out}"', f'run.init="{args.init}"',
                                            f"run.steps_pretrain={args.steps}", f"optim.lr_g={args.lr}",
                                            f"run.val_every={args.steps}", *VARIANTS[name]])
            summary = train(cfg, resume=(out / "last.pt").exists(), progress=False)
            export_generator(out, weights, checkpoint="last.pt")
            runs[name] = {"steps": summary["steps"], "seconds": round(summary["seconds"], 1)}
        print(f"{name}: trained ({weights})", flush=True)
        # the networks alone (consistency=0): training recipes are compared without back-projection
        models[name] = upscaler_sr(Upscaler.from_pretrained(weights, device="cpu", tile=None, consistency=0))
    models["start"] = upscaler_sr(Upscaler.from_pretrained(args.init, device="cpu", tile=None, consistency=0))
    sets = [str(args.val), *shifted_copies(args.val, args.out)]
    summary = summarise(evaluate(sets, models))
    print(format_table(summary))
    print(verdict(summary, sets))
    if args.json:
        args.json.write_text(json.dumps({"init": str(args.init), "steps": args.steps, "lr": args.lr,
                                         "variants": {k: VARIANTS[k] for k in args.variants}, "runs": runs,
                                         "sets": summary, "verdict": verdict(summary, sets)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
