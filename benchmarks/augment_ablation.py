"""Short ablation of the augmentations beyond the seed paper's (scale and intensity, cxrsr.data.augment), for
images from other hospitals: one short training stretch per variant, all from the same weights with the same
seed and steps, then the benchmark protocol on nih/val (the model-selection set) and the two other-hospital
test sets.

    python benchmarks/augment_ablation.py --init W.safetensors --steps 1500 --out runs/ablation \\
        --json benchmarks/results/augment-ablation.json

Reading it: nih/val decides whether a variant costs in-distribution quality; the other-hospital sets show
whether it helps there. Those two sets are test sets, so a recipe chosen by this table has seen them once:
the note that records the choice says so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cxrsr.evaluation import BASELINES, evaluate, summarise, upscaler_sr
from cxrsr.evaluation.evaluate import format_table
from cxrsr.inference import Upscaler
from cxrsr.training import export_generator, load_config, train

CXR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cxr"
INTENSITY = ["augment.gamma_p=0.3", "augment.contrast_p=0.3", "augment.brightness_p=0.3", "augment.invert_p=0.1"]
SCALE = ["augment.scale_p=0.5", "augment.scale_min=0.35"]
VARIANTS = {"paper": [], "intensity": INTENSITY, "scale": SCALE, "scale+intensity": SCALE + INTENSITY}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", required=True, help="weights every variant starts from")
    p.add_argument("--config", default="configs/cxr_fidelity_cpu.toml")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--sets", nargs="+", default=[str(CXR / "nih" / "val"), str(CXR / "covid_adult" / "test"),
                                                  str(CXR / "kermany_pediatric" / "test")])
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
        models[name] = upscaler_sr(Upscaler.from_pretrained(weights, device="cpu", tile=None))
    models["start"] = upscaler_sr(Upscaler.from_pretrained(args.init, device="cpu", tile=None))
    summary = summarise(evaluate(args.sets, models))
    print(format_table(summary))
    if args.json:
        args.json.write_text(json.dumps({"init": str(args.init), "steps": args.steps, "lr": args.lr,
                                         "variants": {k: VARIANTS[k] for k in args.variants}, "runs": runs,
                                         "sets": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
