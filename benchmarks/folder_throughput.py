"""Folder throughput of `cxrsr upscale`: images per second and peak memory on a folder of real chest X-rays,
with the read / upscale / write overlap (inference/pipeline.py) and without it (``--no-overlap``).

    python benchmarks/folder_throughput.py --count 100 --sizes 1024 256 --json benchmarks/results/folder-throughput.json

Two folders are made once under --work from NIH images (nih/train, then val and test): the 1024x1024 PNGs as
they are (-> 4096x4096 outputs, in tiles) and the same images downscaled to 256x256 with Pillow's bicubic
(-> 1024x1024, one pass each). Each (folder, mode) runs the real command line in its own process, so its peak
RSS is its own (``/usr/bin/time``-style, from the child's rusage); the outputs are removed between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CXR = Path(os.environ.get("CXRSR_SHARED", ROOT.parent / "shared")) / "data" / "cxr"


def make_folder(work: Path, size: int, count: int) -> Path:
    folder = work / f"nih-{size}-{count}"
    if folder.exists() and len(list(folder.glob("*.png"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((CXR / "nih" / "train").glob("*.png")) + sorted((CXR / "nih" / "val").glob("*.png"))
    for path in sources[:count]:
        with Image.open(path) as im:
            grey = im.convert("L")
            if size != grey.width:
                grey = grey.resize((size, size), Image.BICUBIC)
            grey.save(folder / path.name)
    return folder


def run_cli(folder: Path, out: Path, overlap: bool, weights: str | None) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "cxrsr", "upscale", str(folder), "-o", str(out)]
    if weights:
        cmd += ["--weights", weights]
    if not overlap:
        cmd.append("--no-overlap")
    start = time.perf_counter()
    pid = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).pid
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    n = len(list(out.glob("*.png")))
    shutil.rmtree(out, ignore_errors=True)
    return {"images": n, "seconds": round(seconds, 2), "s_per_image": round(seconds / n, 4),
            "images_per_s": round(n / seconds, 4), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 256], help="input sides (NIH is 1024)")
    p.add_argument("--weights", default=None)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "folder-throughput")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results = []
    for size in args.sizes:
        folder = make_folder(args.work, size, args.count)
        for overlap in (False, True):
            r = {"input": f"{size}x{size}", "output": f"{4 * size}x{4 * size}",
                 "mode": "overlapped (default)" if overlap else "--no-overlap",
                 **run_cli(folder, args.work / "out", overlap, args.weights)}
            print(json.dumps(r), flush=True)
            results.append(r)
    print("| input -> output | mode | images | s per image | images/s | peak RSS MB | CPU s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['input']} -> {r['output']} | {r['mode']} | {r['images']} | {r['s_per_image']:.3f} | "
              f"{r['images_per_s']:.3f} | {r['peak_rss_mb']:.0f} | {r['cpu_seconds']:.0f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"count": args.count, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
