"""The shipping rule for a new cxr-fidelity, as one command: candidates from a run, scored on validation and test.

    python benchmarks/ship_candidates.py --run runs/fid-cos2 --out runs/cand-cos2 \\
        --json benchmarks/results/candidates-fid-cos2.json

The candidates are fixed before anything is scored: the run's EMA (best.pt) and its blends with the weights it
started from (``--blends``, the run's share; weight-space ensembling, as ``cxrsr export-weights --blend-with``
writes them). The previous model is copied beside them first, so that shipping a candidate later cannot change
what it was compared with. Every model is scored as cxrsr runs it (``--consistency`` back-projection steps, 2 by
default), by the benchmark protocol:

- validation: nih/val and its eight shifted copies (benchmarks/consistency.py makes them);
- test: nih/test, covid_adult/test and kermany_pediatric/test.

Rule: among the candidates within ``--tolerance`` dB (0.005, the recipe study's "loses nothing") of the previous
model's PSNR on every test set, the one with the best nih/val PSNR ships; if none is, nothing ships. Validation
chooses; the test sets only guard.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from consistency import CXR, make_copies  # noqa: E402
from quality_table import SETS  # noqa: E402

from cxrsr.evaluation import BASELINES, evaluate, summarise, upscaler_sr_by_steps  # noqa: E402
from cxrsr.inference import Upscaler  # noqa: E402
from cxrsr.training import export_generator  # noqa: E402
from cxrsr.weights import resolve_weights  # noqa: E402

TESTS = {name: CXR / rel for name, rel in SETS.items()}  # the quality table's test sets


def candidates(run: Path, previous: str, blends: list[float], out: Path) -> dict[str, Path]:
    """Write the previous model and every candidate into ``out``; returns {name: file}, the previous first."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"previous": out / "previous.safetensors"}
    if not files["previous"].exists():  # kept from the first call: a re-shipped name must not move the baseline
        shutil.copyfile(resolve_weights(previous), files["previous"])
    files["EMA"] = export_generator(run, out / "ema.safetensors", checkpoint="best.pt")
    for b in blends:
        files[f"blend {b:g}"] = export_generator(run, out / f"blend-{b:g}.safetensors", checkpoint="best.pt",
                                                 blend_with=files["previous"], blend=b)
    return files


def score(files: dict[str, Path], folders: dict[str, Path], steps: int) -> dict[str, dict[str, dict]]:
    """{set: {model: {"psnr", "ssim", "n"}}} with bicubic among the models."""
    models = {"bicubic": BASELINES["bicubic"]}
    for name, path in files.items():
        network = Upscaler.from_pretrained(path, device="cpu", tile=None, consistency=0)
        models[name] = upscaler_sr_by_steps(network, [steps])[steps]
    summary = summarise(evaluate([str(f) for f in folders.values()], models))
    return {name: summary[str(f)] for name, f in folders.items()}


def ship_rule(val: dict, test: dict, names: list[str], tolerance: float) -> tuple[str | None, dict[str, bool]]:
    """The candidate to ship (or None) and, for each candidate, whether it is within tolerance on every test set."""
    passes = {n: all(test[s][n]["psnr"] >= test[s]["previous"]["psnr"] - tolerance for s in test) for n in names}
    eligible = [n for n in names if passes[n]]
    return max(eligible, key=lambda n: val["nih/val"][n]["psnr"], default=None), passes


def gain_table(scores: dict, names: list[str], ssim: bool) -> str:
    sets = list(scores)
    lines = ["| weights | " + " | ".join(sets) + " |", "| --- " * (len(sets) + 1) + "|"]
    for n in names:
        cells = []
        for s in sets:
            m, b = scores[s][n], scores[s]["bicubic"]
            cells.append(f"{m['psnr'] - b['psnr']:+.3f}" + (f" / {m['ssim']:.5f}" if ssim else ""))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="the training run (its best.pt gives the EMA)")
    p.add_argument("--previous", default="cxr-fidelity", help="the model in use: a shipped name or a file")
    p.add_argument("--blends", type=float, nargs="*", default=[0.5, 0.3, 0.2], help="the run's share in each blend")
    p.add_argument("--out", type=Path, required=True, help="where the candidates and the shifted copies go")
    p.add_argument("--consistency", type=int, default=2, help="back-projection steps, as cxrsr runs by default")
    p.add_argument("--tolerance", type=float, default=0.005, help="dB a candidate may lose on a test set")
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    files = candidates(args.run, args.previous, args.blends, args.out)
    names = [n for n in files if n != "previous"]
    copies = make_copies(args.out / "copies")
    val = score(files, {"nih/val": CXR / "nih" / "val", **{c.name.removeprefix("nih-val-"): c for c in copies}},
                args.consistency)
    test = score(files, TESTS, args.consistency)
    chosen, passes = ship_rule(val, test, names, args.tolerance)

    print(f"Validation: PSNR gain over bicubic in dB, {args.consistency} back-projection steps")
    print(gain_table(val, list(files), ssim=False))
    print(f"\nTest: PSNR gain over bicubic in dB / SSIM, {args.consistency} back-projection steps")
    print(gain_table(test, list(files), ssim=True))
    print("\nAgainst the previous model (PSNR, dB): " + "; ".join(
        f"{n}: " + ", ".join(f"{s.split('/')[0]} {test[s][n]['psnr'] - test[s]['previous']['psnr']:+.3f}"
                             for s in test) + (" (passes)" if passes[n] else "") for n in names))
    if chosen is None:
        print(f"\nNo candidate is within {args.tolerance} dB of the previous model on every test set: none ships.")
    else:
        blend = "" if chosen == "EMA" else f" --blend-with {files['previous']} --blend {chosen.split()[1]}"
        print(f"\nShips: {chosen}: scripts/export_shipped.sh cxr-fidelity {args.run} best.pt{blend}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"run": str(args.run), "previous": args.previous, "consistency":
                                         args.consistency, "tolerance": args.tolerance, "validation": val,
                                         "test": test, "passes": passes, "ships": chosen}, indent=2) + "\n")


if __name__ == "__main__":
    main()
