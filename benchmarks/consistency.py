"""Back-projection steps (cxrsr.inference.consistency) on nih/val and its shifted copies, and what they cost.

    python benchmarks/consistency.py --weights cxr-fidelity --json benchmarks/results/consistency.json

Scores each weights file with 0, 1, 2, 4 and 8 steps by the benchmark protocol on nih/val and on the shifted
copies of it that benchmarks/augment_ablation.py and benchmarks/domain_copies.py make (half, gamma, bright,
down15, noise, blur, jpeg75, usm8), then times the steps against the network on one 256x256 -> 1024x1024 image
and the steps alone on a 3000x3000 -> 12000x12000 one. The default number of steps is chosen here, on
validation images only; the test sets play no part.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cxrsr.evaluation import evaluate, summarise, upscaler_sr_by_steps
from cxrsr.evaluation.evaluate import BASELINES
from cxrsr.inference import Upscaler
from cxrsr.inference.consistency import back_project

HERE = Path(__file__).resolve().parent
CXR = HERE.parents[0].parent / "shared" / "data" / "cxr"
STEPS = (0, 1, 2, 4, 8)
COPIES = ("half", "gamma", "bright", "down15", "noise", "blur", "jpeg75", "usm8")


def make_copies(out: Path) -> list[Path]:
    sys.path.insert(0, str(HERE))
    from augment_ablation import bright_copy, shifted_copies

    val = CXR / "nih" / "val"
    shifted_copies(val, out)
    bright_copy(val, out)
    subprocess.run([sys.executable, str(HERE / "domain_copies.py"), "--val", str(val), "--out", str(out)], check=True)
    return [out / f"nih-val-{name}" for name in COPIES]


def timing(weights: str, repeats: int) -> dict:
    up = Upscaler.from_pretrained(weights, device="cpu", tile=None, consistency=0)
    rng = np.random.default_rng(0)
    lr = rng.random((256, 256), dtype=np.float32)
    up.upscale_array(lr)  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        sr = up.upscale_array(lr)
    network = (time.perf_counter() - t) / repeats
    rows = {"network_s_256": network}
    for steps in (1, 2, 4):
        t = time.perf_counter()
        for _ in range(repeats):
            back_project(sr[None].copy(), lr[None], 4, steps)
        rows[f"steps{steps}_s_256"] = (time.perf_counter() - t) / repeats
    big_lr = rng.random((3000, 3000), dtype=np.float32)
    big_sr = np.repeat(np.repeat(big_lr, 4, axis=0), 4, axis=1)[None]
    t = time.perf_counter()
    back_project(big_sr, big_lr[None], 4, 2)
    rows["steps2_s_3000"] = time.perf_counter() - t
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", default=["cxr-fidelity"])
    p.add_argument("--copies", type=Path, default=Path("runs/copies"), help="where the shifted copies are written")
    p.add_argument("--steps", type=int, nargs="+", default=list(STEPS), help="numbers of steps to score")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    folders = [CXR / "nih" / "val", *make_copies(args.copies)]
    models = {"bicubic": BASELINES["bicubic"]}
    for w in args.weights:
        by_steps = upscaler_sr_by_steps(Upscaler.from_pretrained(w, device="cpu", tile=None, consistency=0),
                                        args.steps)  # the network runs once per image for all of them
        for steps, sr in by_steps.items():
            models[f"{Path(w).stem} steps={steps}"] = sr
    summary = summarise(evaluate([str(f) for f in folders], models))
    names = [Path(f).name if Path(f).name != "val" else "nih/val" for f in folders]
    print("PSNR gain over bicubic in dB (SSIM) on each validation set")
    print("| model | " + " | ".join(names) + " |")
    print("| --- | " + " | ".join("---" for _ in names) + " |")
    for m in list(models)[1:]:
        cells = []
        for f in folders:
            r, b = summary[str(f)][m], summary[str(f)]["bicubic"]
            cells.append(f"{r['psnr'] - b['psnr']:+.3f} ({r['ssim']:.4f})")
        print(f"| {m} | " + " | ".join(cells) + " |")
    times = timing(args.weights[0], args.repeats)
    print(f"CPU time, {torch.get_num_threads()} threads: " + ", ".join(f"{k} {v:.3f}" for k, v in times.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"sets": {n: summary[str(f)] for n, f in zip(names, folders)},
                                         "timing": times, "threads": torch.get_num_threads()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
