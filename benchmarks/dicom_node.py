"""Throughput and latency of `cxrsr dicom-node` on this machine: real chest DICOMs (NIH radiographs wrapped
as CR at their own 1024x1024, plus RG1_UNCR) sent by dcmtk's storescu to the node, which upscales them and
stores the derived instances in a local Orthanc. Twice: undisturbed, and with Orthanc restarted once
mid-run. Prints (and with --json writes) instances per minute, p50/p95 seconds from arrival at the node to
stored in Orthanc, and the node's peak RSS.

    python benchmarks/dicom_node.py --count 100 --json benchmarks/results/dicom_node.json
    python benchmarks/dicom_node.py --count 4 --side 128 --weights cxr-fidelity     # a quick check

Needs Orthanc, its DICOMweb plugin and dcmtk (scripts/install-system-deps.sh), and ../shared beside the
checkout. Latency is taken from the node's own spool records: arrival (before the Success answer) to the
moment Orthanc answered Success to the node's C-STORE.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_dicom_node import NodeProcess, Orthanc, free_port, png_as_cr, tool, wait_for  # noqa: E402

NODE_AET = "CXRSR"


def make_inputs(shared: Path, folder: Path, count: int, side: int | None) -> list[Path]:
    """``count`` real chest DICOMs: NIH PNGs as CR (one study, one series) and RG1_UNCR last."""
    from pydicom.data import get_testdata_file

    pngs = []
    for split in ("test", "val", "train"):
        pngs += sorted((shared / "data/cxr/nih" / split).glob("*.png"))
    if len(pngs) < count - 1:
        raise SystemExit(f"only {len(pngs)} NIH images under {shared}/data/cxr/nih")
    study, series = generate_uid(), generate_uid()
    files = [png_as_cr(p, folder / f"{i:03d}_{p.stem}.dcm", side, study, series, i + 1)
             for i, p in enumerate(pngs[: count - 1])]
    rg1 = get_testdata_file("RG1_UNCR.dcm")
    if side:  # a quick check: a crop of RG1_UNCR instead of its 1841x1955
        from test_dicom_node import crop

        files.append(crop(Path(rg1), folder / "rg1.dcm", (600, 500, side, side)))
    else:
        files.append(Path(rg1))
    return files


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_phase(name: str, files: list[Path], folder: Path, weights: str, restart_pause_s: float | None) -> dict:
    node_port = free_port()
    pacs = Orthanc(folder / "orthanc", node_port).start()
    node = NodeProcess(folder / "node", ["--forward", f"{pacs.aet}@127.0.0.1:{pacs.dicom_port}", "--weights",
                                         weights, "--retry-base-s", "1", "--retry-max-s", "5",
                                         "--max-attempts", "1000"], node_port)
    try:
        node.start()
        sender = subprocess.Popen([tool("storescu"), "-R", "-aet", "BENCH", "-aec", NODE_AET, "127.0.0.1",
                                   str(node_port), *map(str, files)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.STDOUT)
        done = node.spool / "done"
        restarted_at = None
        if restart_pause_s is not None:
            wait_for(lambda: len(list(done.glob("*.json"))) >= max(1, len(files) // 3), 24 * 3600,
                     "a third of the batch")
            pacs.stop()
            restarted_at = time.time()
            time.sleep(restart_pause_s)
            pacs.start()
        wait_for(lambda: len(list(done.glob("*.json"))) >= len(files), 24 * 3600, "the whole batch", interval=1)
        sender.wait(600)
        peak = peak_rss_mib(node.proc.pid)
        records = [json.loads(p.read_text()) for p in done.glob("*.json")]
        stored = len(pacs.get("/instances"))
    finally:
        node.stop()
        pacs.stop()
    latency = np.array([r["done"] - r["received"] for r in records])
    span = max(r["done"] for r in records) - min(r["received"] for r in records)
    result = {
        "phase": name, "instances": len(records), "in_orthanc": stored,
        "instances_per_minute": round(60 * len(records) / span, 2),
        "p50_s": round(float(np.percentile(latency, 50)), 2), "p95_s": round(float(np.percentile(latency, 95)), 2),
        "node_peak_rss_mib": round(peak, 1), "wall_s": round(span, 1),
        "upscale_s_mean": round(float(np.mean([r.get("upscale_s", 0) for r in records])), 2),
    }
    if restarted_at is not None:
        result["orthanc_down_s"] = restart_pause_s
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=100, help="instances per phase (default: 100)")
    p.add_argument("--side", type=int, default=None,
                   help="resize the NIH images to SIDE x SIDE and crop RG1_UNCR (default: their own size)")
    p.add_argument("--weights", default="cxr-fidelity")
    p.add_argument("--restart-pause-s", type=float, default=10.0, help="how long Orthanc is down (default: 10)")
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="cxrsr-node-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "inputs").mkdir()
        files = make_inputs(args.shared, tmp / "inputs", args.count, args.side)
        results = [run_phase("undisturbed", files, tmp / "a", args.weights, None),
                   run_phase("orthanc restarted mid-run", files, tmp / "b", args.weights, args.restart_pause_s)]
    for r in results:
        print(f"{r['phase']}: {r['instances']} instances ({r['in_orthanc']} in Orthanc), "
              f"{r['instances_per_minute']} / min, p50 {r['p50_s']} s, p95 {r['p95_s']} s arrival -> stored, "
              f"node peak RSS {r['node_peak_rss_mib']} MiB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"count": args.count, "side": args.side, "weights": args.weights,
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
