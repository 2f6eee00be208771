"""Hostile-input reliability: the corpus of tests/corpus.py through the readers and `cxrsr upscale`, tabulated.

    python benchmarks/reliability.py --json benchmarks/results/reliability.json

Each case family is counted: cases tried, crashes (an exception other than cxrsr's input error, or a dead
process), hangs (over the per-case time limit), inputs modified, partial outputs left, and any other broken
rule (an error that does not name the file, a wrong result, a missing error line). To count "before" on an
older commit, put its source first on the path:

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before/src python benchmarks/reliability.py --json before.json
Needs ../shared (two real chest X-rays) and pydicom-data (a real CR DICOM).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from corpus import Seeds, build_corpus, check_cli, check_reader  # noqa: E402


def seeds(shared: Path) -> Seeds:
    from pydicom.data import get_testdata_file

    return Seeds(png=shared / "data/cxr/nih/test/00000061_012.png",
                 jpeg=shared / "data/cxr/covid_adult/test/0a7faa2a.jpg",
                 dicom=Path(get_testdata_file("RG1_UNCR.dcm")))


def tiny_weights(folder: Path) -> str:
    """A small random generator: the CLI's file handling at a fraction of the real model's cost."""
    import torch

    from cxrsr.models import Generator, GeneratorConfig
    from cxrsr.weights import save_generator

    torch.manual_seed(0)
    return str(save_generator(Generator(GeneratorConfig(channels=8, blocks=1)).eval(), folder / "tiny.safetensors"))


def tabulate(reader, cli) -> list[dict]:
    families: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for harness, outcomes in (("reader", reader), ("cli", cli)):
        for o in outcomes:
            row = families[o.family]
            if harness == "reader":
                row["cases"] += 1
                row["reader crashes"] += o.result == "crash"
                row["reader hangs"] += o.result == "hang"
            else:
                row["cli hangs"] += o.result == "hang"
                row["cli missing"] += o.result == "missing"
            row["inputs modified"] += any("input changed" in p for p in o.problems)
            row["partial outputs"] += any("failed but left" in p for p in o.problems)
            row[f"{harness} rule broken"] += bool(o.problems)
    return [{"family": name, **counts} for name, counts in families.items()]


def _commit(package) -> str:
    import subprocess

    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(package.__file__).parent,
                            capture_output=True, text=True)
    return result.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--python", default=sys.executable, help="interpreter whose cxrsr is tested")
    parser.add_argument("--weights", default=None, help="weights for the CLI run (default: a tiny random model)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep the corpus and outputs in this folder")
    parser.add_argument("--readers-only", action="store_true", help="skip the CLI run")
    parser.add_argument("--exclude", nargs="*", default=[], metavar="NAME",
                        help="leave these cases out (e.g. a case that hangs an old version's whole batch)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cxrsr-reliability-")) if args.keep is None else args.keep
    try:
        t = time.perf_counter()
        sources = seeds(args.shared)
        cases = [c for c in build_corpus(work / "corpus", sources) if c.name not in args.exclude]
        for name in args.exclude:  # out of the folder too, or the CLI's folder walk would still meet it
            (work / "corpus" / name).unlink(missing_ok=True)
        built = time.perf_counter() - t
        weights = args.weights or tiny_weights(work)
        t = time.perf_counter()
        reader = check_reader(work / "corpus", cases, sources, python=args.python)
        reader_s = time.perf_counter() - t
        if args.readers_only:
            cli, summary = [], {"seconds": 0, "exit_status": None, "problems": []}
        else:
            cli, summary = check_cli(work / "corpus", cases, work / "out", weights, python=args.python)
        table = tabulate(reader, cli)
        print(f"{len(cases)} cases built in {built:.1f} s; readers {reader_s:.1f} s; CLI {summary['seconds']} s, "
              f"exit {summary['exit_status']}")
        keys = ["cases", "reader crashes", "reader hangs", "cli hangs", "cli missing", "inputs modified",
                "partial outputs", "reader rule broken", "cli rule broken"]
        print("| family | " + " | ".join(keys) + " |")
        print("| --- " * (len(keys) + 1) + "|")
        total = defaultdict(int)
        for row in table:
            print(f"| {row['family']} | " + " | ".join(str(row.get(k, 0)) for k in keys) + " |")
            for k in keys:
                total[k] += row.get(k, 0)
        print("| all | " + " | ".join(str(total[k]) for k in keys) + " |")
        print("CLI run problems:", summary["problems"] or "none")
        for harness, outcomes in (("reader", reader), ("cli", cli)):
            for o in outcomes:
                for p in o.problems:
                    print(f"  {harness:6s} {o.family:12s} {ascii(o.name)[:50]}: {p[:200]}")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            import cxrsr

            args.json.write_text(json.dumps({
                "python": args.python, "cxrsr": str(Path(cxrsr.__file__).parent), "commit": _commit(cxrsr), "cases": len(cases), "table": table, "total": total, "cli_run": summary,
                "reader_seconds": round(reader_s, 1),
                "problems": [{"harness": h, "family": o.family, "name": ascii(o.name), "problems": o.problems}
                             for h, outs in (("reader", reader), ("cli", cli)) for o in outs if o.problems],
            }, indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
