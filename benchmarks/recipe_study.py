"""Training recipes compared at equal CPU time: every variant trains from the same start for the same CPU
seconds (``run.cpu_budget_s``), then its weights are scored by the benchmark protocol on nih/val and on the three
shifted copies of it that benchmarks/augment_ablation.py makes (nih/val at half size, nih/val with changed
grey-level curves, nih/val brightened until a fifth of each image is above 0.95). The test sets play no part.

    python benchmarks/recipe_study.py --budget 900 --parallel 2 --out runs/study \\
        --json benchmarks/results/recipe-study.json

Each variant runs in its own process with one thread (``--parallel`` of them at a time; CPU seconds are counted
per process, so variants that share the machine are still compared at equal CPU time), with the data loaded in
that process (``data.workers=0``) so the augmentations' cost is in its budget too. A finished variant is not
trained again (nor one recorded in the ``--json`` file given, which is the study's record across machines and
checkouts); a killed one resumes from its last checkpoint.

Base recipe (every variant changes one thing of it): configs/cxr_fidelity_cpu.toml from the shipped
cxr-fidelity, with flips as the only augmentations, a constant learning rate of 2e-4 after a 100-step warm-up,
BatchNorm frozen, fp32, MSE, batches of 8 HR patches of 128x128, EMA 0.999. Both the EMA and the raw weights of
each variant are scored.

Decision rule, fixed before the runs: a change is kept only if it gains at least 0.05 dB on nih/val at equal
CPU time and loses nothing (within 0.005 dB) on any shifted copy. (The bright copy joined the rule after a long
flips-only run darkened near-white areas that nih/val does not hold; variants recorded before it are judged on
the other two.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CXRSR_SHARED", ROOT.parent / "shared")).resolve()  # or --shared
CXR = SHARED / "data" / "cxr"
UPSTREAM = SHARED / "weights" / "swift_srgan_4x.pth.tar"

# The base is spelt out in full, so that it stays the same when the config's defaults move to a newer recipe.
BASE = ["optim.schedule=\"constant\"", "optim.lr_g=2e-4", "optim.warmup_steps=100", "augment.rotate_p=0",
        "augment.clahe_p=0", "augment.invert_p=0", "augment.scale_p=0", "augment.hflip_p=0.5", "augment.vflip_p=0.2",
        "data.hr_size=128", "optim.batch_size=8", "optim.amp=\"auto\"", "optim.freeze_bn=true", "optim.ema_decay=0.999",
        "loss.pixel=\"mse\"", "data.workers=0", "data.val=\"\"",
        "run.steps_pretrain=1000000000", "run.val_every=1000000000", "run.ckpt_every=250", "run.validate_init=false"]
# name -> (overrides on top of BASE, initial weights, the variant whose step count sets this one's horizon)
VARIANTS: dict[str, tuple[list[str], str, str]] = {
    "base (flips only)": ([], "cxr-fidelity", ""),
    "paper augmentations": (["augment.rotate_p=0.5", "augment.clahe_p=0.5"], "cxr-fidelity", ""),
    "no augmentation": (["augment.hflip_p=0", "augment.vflip_p=0"], "cxr-fidelity", ""),
    "lr 1e-4": (["optim.lr_g=1e-4"], "cxr-fidelity", ""),
    "lr 5e-4": (["optim.lr_g=5e-4"], "cxr-fidelity", ""),
    "lr 1e-3": (["optim.lr_g=1e-3"], "cxr-fidelity", ""),
    "2x256 patches": (["data.hr_size=256", "optim.batch_size=2"], "cxr-fidelity", ""),
    # the other way at about the same HR pixels per step: more, smaller patches (more independent samples)
    "16x96 patches": (["data.hr_size=96", "optim.batch_size=16"], "cxr-fidelity", ""),
    "32x64 patches": (["data.hr_size=64", "optim.batch_size=32"], "cxr-fidelity", ""),
    "BatchNorm trained": (["optim.freeze_bn=false"], "cxr-fidelity", ""),
    "bf16 autocast": (["optim.amp=\"bf16\""], "cxr-fidelity", ""),
    "L1": (["loss.pixel=\"l1\""], "cxr-fidelity", ""),
    "start DIV2K": ([], str(UPSTREAM), ""),
    "start random, lr 1e-3": (["optim.lr_g=1e-3"], "", ""),
    "cosine 2e-4": (["optim.schedule=\"cosine\"", "optim.lr_min=2e-6"], "cxr-fidelity", "base (flips only)"),
    # inversion (1 - patch, as MONOCHROME1 polarity) turns the many near-black pixels of the training images
    # (5.4% below 0.05) into near-white ones (0.4% above 0.95): the range a long flips-only run learnt to darken
    "invert 0.5": (["augment.invert_p=0.5"], "cxr-fidelity", ""),
    "invert 0.25": (["augment.invert_p=0.25"], "cxr-fidelity", ""),
    "invert 0.5, lr 1e-4": (["augment.invert_p=0.5", "optim.lr_g=1e-4"], "cxr-fidelity", ""),
}
SETS = ["nih-val", "nih-val-half", "nih-val-gamma", "nih-val-bright"]  # the first is validation, the rest shifted
RULE_GAIN, RULE_SHIFT_TOLERANCE = 0.05, 0.005


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def run_variant(name: str, budget: float, out: Path, config: Path) -> dict:
    """Train and score one variant in this process (called in a child with one thread)."""
    import torch

    from augment_ablation import bright_copy, shifted_copies
    from cxrsr.evaluation import BASELINES, evaluate, summarise, upscaler_sr
    from cxrsr.inference import Upscaler
    from cxrsr.training import export_generator, load_config, train

    overrides, init, horizon_from = VARIANTS[name]
    run = out / slug(name)
    result_file = run.with_suffix(".json")
    if result_file.exists():
        return json.loads(result_file.read_text())
    extra = []
    if horizon_from:  # cosine needs its length in steps: the steps the constant-rate run took in the budget
        steps = json.loads((out / f"{slug(horizon_from)}.json").read_text())["steps"]
        extra = [f"run.steps_pretrain={steps}", "run.cpu_budget_s=0"]
    train_dir = json.dumps(str(CXR / "nih" / "train"))
    cfg = load_config(config, [*BASE, *overrides, f"data.train={train_dir}", f"run.cpu_budget_s={budget}",
                               f"run.out={json.dumps(str(run))}", f"run.init={json.dumps(init)}", *extra])
    summary = train(cfg, resume=(run / "last.pt").exists(), progress=False)
    last = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    models = {}
    for kind, ema in (("ema", True), ("raw", False)):
        weights = run / f"{kind}.safetensors"
        export_generator(run, weights, use_ema=ema, checkpoint="last.pt")
        # the networks alone (consistency=0): training recipes are compared without back-projection
        models[kind] = upscaler_sr(Upscaler.from_pretrained(weights, device="cpu", tile=None, consistency=0))
    models["bicubic"] = BASELINES["bicubic"]
    val = CXR / "nih" / "val"
    sets = [str(val), *shifted_copies(val, out), bright_copy(val, out)]
    scores = summarise(evaluate(sets, models))
    result = {"variant": name, "overrides": overrides + extra, "init": Path(init).name if init else "random",
              "cpu_seconds": round(last["cpu_seconds"], 1), "steps": summary["steps"],
              "samples": summary["steps"] * cfg.optim.batch_size,
              "hr_pixels": summary["steps"] * cfg.optim.batch_size * cfg.data.hr_size ** 2,
              "scores": {Path(s).name if Path(s).name != "val" else "nih-val": v for s, v in scores.items()}}
    result_file.write_text(json.dumps(result, indent=2) + "\n")
    return result


def table(results: list[dict]) -> str:
    # a result recorded before nih-val-bright existed shows a dash there
    lines = ["| variant | CPU s | steps | samples | " + " | ".join(f"{s} EMA / raw (dB)" for s in SETS)
             + " | nih-val SSIM (EMA) |", "| --- " * (5 + len(SETS)) + "|"]
    for r in results:
        cells = [f"{r['scores'][s]['ema']['psnr']:.3f} / {r['scores'][s]['raw']['psnr']:.3f}"
                 if s in r["scores"] else "-" for s in SETS]
        lines.append(f"| {r['variant']} | {r['cpu_seconds']:.0f} | {r['steps']} | {r['samples']} | "
                     + " | ".join(cells) + f" | {r['scores']['nih-val']['ema']['ssim']:.4f} |")
    bic = {s: r["scores"][s]["bicubic"]["psnr"] for r in results for s in SETS if s in r["scores"]}
    lines.append("| bicubic | | | | " + " | ".join(f"{bic[s]:.3f}" if s in bic else "-" for s in SETS) + " | |")
    return "\n".join(lines)


def verdict(results: list[dict], reference: str = "base (flips only)") -> list[str]:
    by = {r["variant"]: r for r in results}
    if reference not in by:
        return []
    ref = by[reference]["scores"]
    best = lambda scores, s: max(scores[s]["ema"]["psnr"], scores[s]["raw"]["psnr"])  # noqa: E731
    out = []
    for r in results:
        if r["variant"] == reference:
            continue
        # every set both were scored on: a result recorded before the bright copy is judged on half and gamma
        d = {s: best(r["scores"], s) - best(ref, s) for s in SETS if s in r["scores"] and s in ref}
        keep = d["nih-val"] >= RULE_GAIN and min(v for s, v in d.items() if s != "nih-val") >= -RULE_SHIFT_TOLERANCE
        changes = ", ".join(f"{s.removeprefix('nih-val-')} {v:+.3f}" for s, v in d.items())
        out.append(f"{r['variant']}: {changes} dB against {reference} -> {'keep' if keep else 'no'}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=900.0, help="CPU seconds per variant")
    p.add_argument("--parallel", type=int, default=2, help="variants trained at once, one thread each")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "cxr_fidelity_cpu.toml")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "study")
    p.add_argument("--json", type=Path)
    p.add_argument("--shared", type=Path, help="the shared data folder (default ../shared beside the checkout)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # child mode: train and score this variant
    args = p.parse_args()
    if args.shared and args.shared.resolve() != SHARED:  # children read it from the environment at import
        os.environ["CXRSR_SHARED"] = str(args.shared.resolve())
        os.execv(sys.executable, [sys.executable, *sys.argv])
    args.out.mkdir(parents=True, exist_ok=True)
    if args.json and args.json.exists():  # results already recorded count as finished and stay in the table
        recorded = json.loads(args.json.read_text())
        if recorded.get("budget_cpu_s") == args.budget:
            for r in recorded["results"]:
                done = args.out / f"{slug(r['variant'])}.json"
                if not done.exists():
                    done.write_text(json.dumps(r, indent=2) + "\n")
    if args.one:
        run_variant(args.one, args.budget, args.out, args.config)
        return

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}

    def child(name: str) -> tuple[str, int]:
        horizon_from = VARIANTS[name][2]
        while horizon_from and not (args.out / f"{slug(horizon_from)}.json").exists():
            time.sleep(10)  # its horizon comes from a variant still running
        with open(args.out / f"{slug(name)}.log", "a") as log:
            rc = subprocess.call([sys.executable, __file__, "--one", name, "--budget", str(args.budget),
                                  "--out", str(args.out), "--config", str(args.config)], env=env,
                                 stdout=log, stderr=subprocess.STDOUT)
        print(f"{name}: {'done' if rc == 0 else f'failed (exit {rc}), see its log'}", flush=True)
        return name, rc

    order = sorted(args.variants, key=lambda n: bool(VARIANTS[n][2]))  # dependants last
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(child, order))
    # the table keeps the study's order and holds every finished variant, not only those run now
    results = [json.loads((args.out / f"{slug(n)}.json").read_text()) for n in VARIANTS
               if (args.out / f"{slug(n)}.json").exists()]
    print(table(results))
    print("\n".join(verdict(results)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"budget_cpu_s": args.budget, "base": BASE, "results": results,
                                         "verdict": verdict(results)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
