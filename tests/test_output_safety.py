"""Where outputs go wrong: a read-only or missing output folder, the input folder used as the output folder,
a disk that fills up mid-write, and `kill -9` in the middle of a batch."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrsr.io import read_image


def _cli(*args: str, preexec=None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cxrsr", "upscale", *args], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec, errors="backslashreplace")


def _errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("cxrsr: error:")]


def _images(folder: Path, lr_xray: np.ndarray, sizes: dict[str, int]) -> dict[Path, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, side in sizes.items():
        path = folder / name
        Image.fromarray(np.asarray(Image.fromarray(lr_xray).resize((side, side), Image.LANCZOS))).save(path)
        written[path] = path.read_bytes()
    return written


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextmanager
def read_only(folder: Path):
    """``folder`` read-only: a read-only bind mount as root (root ignores permission bits), else chmod."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if not (_mount("--bind", str(folder), str(folder)) and _mount("-o", "remount,bind,ro", str(folder))):
        subprocess.run(["umount", str(folder)], capture_output=True)
        pytest.skip("running as root without the right to mount: cannot make a read-only folder")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@contextmanager
def small_disk(folder: Path, size: int):
    """A file system of ``size`` bytes at ``folder`` (tmpfs as root); yields a preexec function for the
    process under test: as non-root it limits the file size instead (RLIMIT_FSIZE, SIGXFSZ ignored), which
    fails a write mid-file the same way."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)):
        try:
            yield None
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        return

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    yield limit


def test_read_only_output_folder_is_one_clear_error(tmp_path, lr_xray, tiny_weights):
    inputs = _images(tmp_path / "in", lr_xray, {"a.png": 32, "b.png": 32})
    out = tmp_path / "out"
    out.mkdir()
    with read_only(out):
        proc = _cli(str(tmp_path / "in"), "-o", str(out), "--weights", tiny_weights)
    assert proc.returncode == 1
    assert _errors(proc) == [f"cxrsr: error: {out}: output folder is not writable"], proc.stderr
    assert "Traceback" not in proc.stderr and list(out.iterdir()) == []
    assert all(p.read_bytes() == data for p, data in inputs.items())


def test_output_folder_that_cannot_be_created(tmp_path, lr_xray, tiny_weights):
    _images(tmp_path / "in", lr_xray, {"a.png": 32})
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    proc = _cli(str(tmp_path / "in"), "-o", str(blocker / "out"), "--weights", tiny_weights)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = _errors(proc)
    assert str(blocker / "out") in line and "cannot create the output folder" in line


def test_output_folder_is_the_input_folder(tmp_path, lr_xray, tiny_weights):
    """Outputs land beside the inputs; a second run neither upscales them again (no _x4_x4) nor refuses the
    originals because their outputs are now among the inputs."""
    inputs = _images(tmp_path / "scans", lr_xray, {"a.png": 32, "b.png": 40})
    folder = str(tmp_path / "scans")
    first = _cli(folder, "-o", folder, "--weights", tiny_weights)
    assert first.returncode == 0 and "2 upscaled, 0 skipped, 0 failed" in first.stdout, first.stderr
    second = _cli(folder, "-o", folder, "--weights", tiny_weights)
    assert second.returncode == 0 and "0 upscaled, 4 skipped, 0 failed" in second.stdout, second.stderr
    assert "is the output of" in second.stderr
    third = _cli(folder, "-o", folder, "--weights", tiny_weights, "--overwrite")
    assert third.returncode == 0 and "2 upscaled, 2 skipped, 0 failed" in third.stdout, third.stderr
    assert sorted(p.name for p in (tmp_path / "scans").iterdir()) == ["a.png", "a_x4.png", "b.png", "b_x4.png"]
    assert all(p.read_bytes() == data for p, data in inputs.items())
    refused = _cli(folder, "-o", folder, "--weights", tiny_weights, "--suffix", "")
    assert refused.returncode == 1 and all("would overwrite an input file" in e for e in _errors(refused))


def test_disk_full_mid_write_fails_that_file_only(tmp_path, lr_xray, tiny_weights):
    """A 32 KB disk: the 4096x4096 output (about 70 KB from the tiny model) of the first file does not fit and fails with one line naming it;
    no partial file is left, under any name; the small files after it are all written."""
    inputs = _images(tmp_path / "in", lr_xray, {"a-big.png": 1024, "b1.png": 24, "b2.png": 24, "b3.png": 24})
    out = tmp_path / "out"
    with small_disk(out, 32 * 1024) as preexec:
        proc = _cli(str(tmp_path / "in"), "-o", str(out), "--weights", tiny_weights, "--tile", "256",
                    preexec=preexec)
        names = sorted(p.name for p in out.iterdir())
        readable = [read_image(out / n).array.shape for n in names]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = _errors(proc)
    assert str(tmp_path / "in" / "a-big.png") in line and "cannot write" in line
    assert names == ["b1_x4.png", "b2_x4.png", "b3_x4.png"]
    assert readable == [(96, 96)] * 3
    assert "3 upscaled, 0 skipped, 1 failed" in proc.stdout
    assert all(p.read_bytes() == data for p, data in inputs.items())


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    from cxrsr.io.atomic import atomic_path, remove_stale_parts

    target = tmp_path / "x_x4.png"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f".x_x4.png.cxrsr-{host}-{dead.pid}-abcd1234.part"
    mine = tmp_path / f".x_x4.png.cxrsr-{host}-{os.getpid()}-efgh5678.part"
    other_host = tmp_path / f".x_x4.png.cxrsr-elsewhere-{dead.pid}-ijkl9012.part"
    for p in (stale, mine, other_host):
        p.write_bytes(b"partial")
    if any(c not in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_." for c in host):
        pytest.skip("host name needs escaping; covered by the kill -9 test")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"complete"
    assert not stale.exists() and mine.exists() and other_host.exists()
    assert remove_stale_parts(target) == []


def test_kill_9_mid_batch_then_rerun(tmp_path, lr_xray):
    """`kill -9` of `cxrsr upscale` (shipped weights) at several points in a batch of 12: after each kill every
    file under a final name is complete and equal to an uninterrupted run's; the same command run again
    finishes the batch, and no temporary file is left."""
    _images(tmp_path / "in", lr_xray, {f"x{i:02d}.png": 160 for i in range(12)})
    args = [str(tmp_path / "in"), "--tile", "256"]
    reference = tmp_path / "reference"
    assert _cli(*args, "-o", str(reference)).returncode == 0
    expected = {p.name: read_image(p).array for p in reference.iterdir()}
    out = tmp_path / "out"
    rng = np.random.default_rng(9)
    kills = 0
    for _ in range(4):
        before = len(list(out.glob("*_x4.png"))) if out.exists() else 0
        if before >= 10:
            break
        proc = subprocess.Popen([sys.executable, "-m", "cxrsr", "upscale", *args, "-o", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(out.glob("*_x4.png"))) >= before + 2:
                break
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0, 0.3)))  # somewhere in the next file: reading, upscaling or writing
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        for path in out.glob("*_x4.png"):
            assert np.array_equal(read_image(path).array, expected[path.name]), path
    assert kills >= 2
    final = _cli(*args, "-o", str(out))
    assert final.returncode == 0
    done = int(final.stdout.split(" upscaled")[0].split()[-1])
    skipped = int(final.stdout.split(" skipped")[0].split()[-1])
    assert done + skipped == 12 and skipped >= 4
    assert sorted(os.listdir(out)) == sorted(expected)
    for name, array in expected.items():
        assert np.array_equal(read_image(out / name).array, array), name
