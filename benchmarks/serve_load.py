"""Load test of `cxrsr serve` on this machine (127.0.0.1 only): N uploads of a real chest X-ray, one in three
bad, C at a time, against a live server; prints requests, seconds, p50/p95 latency, 503 rejects and the
server's peak RSS.

    python benchmarks/serve_load.py --requests 60 --concurrency 8 --queue 4 --side 256
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_serve import live_server, peak_rss_mib  # noqa: E402  (the test suite's server launcher)

from cxrsr.serve.loadtest import mixed_uploads, run_load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", type=Path, default=ROOT.parent / "shared/data/cxr/nih/test/00000061_012.png")
    p.add_argument("--side", type=int, default=256, help="the X-ray is resized to this square input size")
    p.add_argument("--requests", type=int, default=60)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--queue", type=int, default=4)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    with Image.open(args.image) as im:
        xray = np.asarray(im.convert("L").resize((args.side, args.side), Image.BICUBIC))
    proc, url = live_server("--queue", str(args.queue))
    try:
        result = run_load(url, mixed_uploads(xray, args.requests), args.concurrency, timeout=600)
        peak = peak_rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    summary = {**result.summary(), "concurrency": args.concurrency, "queue": args.queue,
               "input": f"{args.side}x{args.side}", "server_peak_rss_mib": round(peak, 1)}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    sys.exit(0 if not result.wrong and result.alive else 1)


if __name__ == "__main__":
    main()
