"""cxrsr upscale --ray: a local Ray (this machine's 2 CPUs) gives the single-process command's outputs, a
manifest row per input, survives an actor that dies, stops with a clear error when actors keep dying, and
finishes an interrupted batch when run again."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pydicom
import pytest
from PIL import Image

from cxrsr.cli import main
from cxrsr.inference.scaleout import ALWAYS_FAIL, FAULT_ENV, RESTARTS

from dicom_samples import pydicom_file

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, nih_png):
    """Five real X-rays at 64x64 (PNG), a real DICOM (CT_small, 128x128), and two bad files."""
    from conftest import CXR

    d = tmp_path_factory.mktemp("ray-in")
    for f in sorted((CXR / "nih" / "test").glob("*.png"))[:5]:
        with Image.open(f) as im:
            im.convert("L").resize((64, 64), Image.BICUBIC).save(d / f.name)
    (d / "ct.dcm").write_bytes(pydicom_file("CT_small.dcm").read_bytes())
    (d / "notes.png").write_text("not an image\n")
    (d / "empty.dcm").write_bytes(b"")
    return d


GOOD = 6


def manifest_rows(out):
    return [json.loads(line) for line in (out / "cxrsr-manifest.jsonl").read_text().splitlines()]


def pixels(path):
    if path.suffix == ".dcm":
        return pydicom.dcmread(path).pixel_array
    with Image.open(path) as im:
        return np.asarray(im)


def test_ray_outputs_equal_the_single_process_command_and_the_manifest_is_right(folder, tmp_path, capsys,
                                                                               monkeypatch):
    # a local run starts its own Ray: it must not try to join the (dead) cluster that RAY_ADDRESS names
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    # --tile fixed in both: "auto" sizes tiles from the free memory, which Ray's object store changes, and
    # another tiling can move float rounding by one least significant bit in a few 16-bit pixels
    assert main(["upscale", str(folder), "-o", str(tmp_path / "single"), "--tile", "256"]) == 1  # two bad files
    assert main(["upscale", str(folder), "-o", str(tmp_path / "ray"), "--ray", "--tile", "256"]) == 1
    single = sorted(p.name for p in (tmp_path / "single").iterdir())
    ray_out = sorted(p.name for p in (tmp_path / "ray").iterdir() if p.suffix != ".jsonl")
    assert single == ray_out and len(single) == GOOD
    for name in single:
        assert np.array_equal(pixels(tmp_path / "single" / name), pixels(tmp_path / "ray" / name)), name
    rows = manifest_rows(tmp_path / "ray")
    assert len(rows) == GOOD + 2 and len({r["input"] for r in rows}) == GOOD + 2
    by_status = {s: [r for r in rows if r["status"] == s] for s in ("done", "failed", "skipped")}
    assert len(by_status["done"]) == GOOD and not by_status["skipped"]
    assert {r["input"].rsplit("/", 1)[1] for r in by_status["failed"]} == {"notes.png", "empty.dcm"}
    assert all(r["error"] and r["input"] in r["error"] for r in by_status["failed"])
    assert all(r["worker"] and r["seconds"] >= 0 for r in by_status["done"])
    assert "6 upscaled, 0 skipped, 2 failed" in capsys.readouterr().out
    # no temporary files left beside the outputs
    assert not [p for p in (tmp_path / "ray").iterdir() if p.name.startswith(".")]


def test_an_actor_that_dies_is_replaced_and_every_file_is_done_once(folder, tmp_path, monkeypatch):
    marker = tmp_path / "actor-exited"
    monkeypatch.setenv(FAULT_ENV, str(marker))
    assert main(["upscale", str(folder), "-o", str(tmp_path / "out"), "--ray"]) == 1  # the two bad files only
    assert marker.exists()  # an actor did exit in the middle of the job
    rows = manifest_rows(tmp_path / "out")
    done = [r["input"] for r in rows if r["status"] == "done"]
    assert len(done) == len(set(done)) == GOOD
    for r in rows:
        if r["status"] == "done":
            assert pixels(tmp_path / "out" / r["output"].rsplit("/", 1)[1]).shape[0] in (256, 512)


def test_actors_that_keep_dying_end_the_run_with_an_error_not_a_restart_loop(folder, tmp_path, monkeypatch,
                                                                             capsys):
    monkeypatch.setenv(FAULT_ENV, ALWAYS_FAIL)
    out = tmp_path / "out"
    assert main(["upscale", str(folder), "-o", str(out), "--ray"]) == 1
    err = capsys.readouterr().err
    assert f"died more than {RESTARTS} times" in err and "run the same command again" in err
    assert not [r for r in manifest_rows(out) if r["status"] == "done"]
    assert [p.name for p in out.iterdir()] == ["cxrsr-manifest.jsonl"]  # no output, complete or partial


def test_an_interrupted_run_finishes_when_run_again(folder, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "cxrsr", "upscale", str(folder), "-o", str(out), "--ray"]
    # SIGINT at its default even when the test runs in a background job (which starts with it ignored)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    manifest = out / "cxrsr-manifest.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:
        if manifest.exists() and '"done"' in manifest.read_text():
            break
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    first = [r for r in manifest_rows(out) if r["status"] == "done"]
    assert 1 <= len(first)
    for p in out.iterdir():  # whatever exists under a final name is complete
        if not p.name.startswith(".") and p.suffix != ".jsonl":
            assert pixels(p).size > 0
    rc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rc.returncode == 1, rc.stderr[-2000:]  # the two bad files
    rows = manifest_rows(out)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "skipped", "failed")}
    assert counts["done"] + counts["skipped"] == GOOD and counts["skipped"] >= len(first)
    assert counts["failed"] == 2
