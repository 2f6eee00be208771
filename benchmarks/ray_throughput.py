"""Single-process `cxrsr upscale` against `cxrsr upscale --ray` on this machine, over the same real X-rays, and
what a cluster should give.

    python benchmarks/ray_throughput.py --images 60 --side 256 --json benchmarks/results/ray-throughput.json

Both commands run as subprocesses (wall time includes start-up: Python, torch, the weights; for Ray also the
local cluster and its actor). The fixed overhead of Ray is measured as the wall time of a --ray run on one
image minus the single-process run on one image. The per-image cost is the mean of the manifest's seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", type=Path, default=ROOT.parent / "shared/data/cxr/nih/test")
    p.add_argument("--images", type=int, default=60)
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    cxrsr = [sys.executable, "-m", "cxrsr", "upscale"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        (tmp / "one").mkdir()
        for f in sorted(args.source.glob("*.png"))[: args.images]:
            with Image.open(f) as im:
                im.convert("L").resize((args.side, args.side), Image.BICUBIC).save(tmp / "in" / f.name)
        n = len(list((tmp / "in").iterdir()))
        shutil.copy(next((tmp / "in").iterdir()), tmp / "one")
        one_single = timed(cxrsr + [str(tmp / "one"), "-o", str(tmp / "o1")])
        one_ray = timed(cxrsr + [str(tmp / "one"), "-o", str(tmp / "o2"), "--ray"])
        single = timed(cxrsr + [str(tmp / "in"), "-o", str(tmp / "single")])
        ray = timed(cxrsr + [str(tmp / "in"), "-o", str(tmp / "ray"), "--ray"])
        rows = [json.loads(line) for line in (tmp / "ray" / "cxrsr-manifest.jsonl").read_text().splitlines()]
    per_image = sum(r["seconds"] for r in rows) / len(rows)
    overhead = one_ray - one_single
    result = {
        "images": n, "input": f"{args.side}x{args.side}", "machine_cpus": __import__("os").cpu_count(),
        "single_process_s": round(single, 1), "single_process_img_per_h": round(3600 * n / single),
        "ray_s": round(ray, 1), "ray_img_per_h": round(3600 * n / ray),
        "one_image_single_s": round(one_single, 1), "one_image_ray_s": round(one_ray, 1),
        "ray_fixed_overhead_s": round(overhead, 1), "per_image_s_in_actor": round(per_image, 3),
        "ray_steady_s_per_image": round((ray - one_ray) / max(n - 1, 1), 3),
    }
    # Projection for nodes like this one (2 cores, one 2-CPU actor each), from the measured steady rate.
    steady = result["ray_steady_s_per_image"]
    result["projection_img_per_h"] = {str(nodes): round(nodes * 3600 / steady) for nodes in (1, 8, 64)}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
