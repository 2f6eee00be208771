"""Property-based fuzzing of every reader: real files, mutated byte by byte by Hypothesis.

The property: ``read_image`` either returns an image the upscaler can take (uint8 / uint16 / float32, 2-D or
2-D plus 1-4 channels, at least 4x4, finite) or raises cxrsr's ``InputFileError`` naming the file on one line.
Any other exception, or an example running over ``SECONDS_PER_EXAMPLE``, is a bug. The server's header check
(``check_pixels``) is held to the same rule with its own ``RequestError``.

CI runs ``CXRSR_FUZZ_EXAMPLES`` (default 3000) examples per seed file, six seeds. A longer run:

    CXRSR_FUZZ_EXAMPLES=20000 python -m pytest -q tests/test_fuzz.py      (or: make fuzz)

Every failing example found so far is kept in ``REGRESSIONS`` and replayed on every run.
"""

from __future__ import annotations

import io
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import CXR, require
from cxrsr.io import InputFileError, read_image
from cxrsr.serve.jobs import RequestError, check_pixels

EXAMPLES = int(os.environ.get("CXRSR_FUZZ_EXAMPLES", "3000"))
SECONDS_PER_EXAMPLE = 10
SEEDS = ("png8", "png16", "jpeg", "tiff", "tiff-zlib", "dicom")
SUFFIX = {"png8": ".png", "png16": ".png", "jpeg": ".jpg", "tiff": ".tif", "tiff-zlib": ".tif", "dicom": ".dcm"}


@pytest.fixture(scope="module")
def seeds(rg1_dicom) -> dict[str, bytes]:
    """Small versions (32x32) of real chest X-rays in each format: small, so each example is quick."""
    import pydicom

    with Image.open(require(CXR / "nih" / "test" / "00000061_012.png")) as im:
        grey = np.asarray(im.convert("L").resize((32, 32), Image.LANCZOS))

    def encoded(image: Image.Image, fmt: str, **options) -> bytes:
        buf = io.BytesIO()
        image.save(buf, format=fmt, **options)
        return buf.getvalue()

    def tiff(array, **options) -> bytes:
        buf = io.BytesIO()
        tifffile.imwrite(buf, array, metadata=None, **options)
        return buf.getvalue()

    ds = pydicom.dcmread(rg1_dicom)
    small = np.asarray(Image.fromarray(ds.pixel_array.astype(np.float32)).resize((32, 32), Image.BOX))
    ds.Rows, ds.Columns = 32, 32
    ds.PixelData = np.clip(np.rint(small), 0, 32767).astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return {
        "png8": encoded(Image.fromarray(grey), "PNG"),
        "png16": encoded(Image.fromarray(grey.astype(np.uint16) * 257), "PNG"),
        "jpeg": encoded(Image.fromarray(grey), "JPEG", quality=90),
        "tiff": tiff(grey.astype(np.uint16) * 257),
        "tiff-zlib": tiff(np.stack([grey] * 3, axis=2), photometric="rgb", compression="zlib"),
        "dicom": buf.getvalue(),
    }


# ------------------------------------------------------------------------------------------------ mutations

_INTERESTING = [0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
                0x80000000, 0xFFFFFFFF]

positions = st.integers(min_value=0, max_value=1 << 20)
mutation = st.one_of(
    st.tuples(st.just("flip"), positions, st.integers(0, 7)),
    st.tuples(st.just("byte"), positions, st.integers(0, 255)),
    st.tuples(st.just("int"), positions, st.sampled_from([2, 4]), st.sampled_from(_INTERESTING),
              st.sampled_from(["<", ">"])),
    st.tuples(st.just("truncate"), positions),
    st.tuples(st.just("delete"), positions, st.integers(1, 64)),
    st.tuples(st.just("insert"), positions, st.binary(min_size=1, max_size=32)),
    st.tuples(st.just("repeat"), positions, st.integers(1, 256), st.integers(1, 8)),
)
mutations = st.lists(mutation, min_size=1, max_size=6)


def mutate(data: bytes, ops) -> bytes:
    out = bytearray(data)
    for op in ops:
        if not out:
            break
        kind, pos = op[0], op[1] % len(out)
        if kind == "flip":
            out[pos] ^= 1 << op[2]
        elif kind == "byte":
            out[pos] = op[2]
        elif kind == "int":
            _, _, width, value, order = op
            packed = struct.pack(order + ("H" if width == 2 else "I"), value & ((1 << (8 * width)) - 1))
            out[pos: pos + width] = packed[: max(0, len(out) - pos)]
        elif kind == "truncate":
            del out[pos:]
        elif kind == "delete":
            del out[pos: pos + op[2]]
        elif kind == "insert":
            out[pos:pos] = op[2]
        elif kind == "repeat":
            chunk = bytes(out[pos: pos + op[2]])
            out[pos:pos] = chunk * op[3]
    return bytes(out)


def check_one(path: Path, data: bytes) -> None:
    """The property, for one file's bytes."""
    path.write_bytes(data)
    # timed, not interrupted: an exception raised from a signal handler can land inside a library that holds a
    # lock (logging's module lock, taken by tifffile on every record) and leave it held for the rest of the
    # run. A reader that never returns is ended by the suite's per-test timeout (pytest-timeout) instead.
    start = time.monotonic()
    try:
        image = read_image(path)
    except InputFileError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
    else:
        a = image.array
        assert a.dtype in (np.uint8, np.uint16, np.float32), a.dtype
        assert a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 2, 3, 4)), a.shape
        assert min(a.shape[:2]) >= 4, a.shape
        assert a.dtype.kind != "f" or np.isfinite(a).all()
    if path.suffix != ".dcm" or data[128:132] == b"DICM":
        try:
            check_pixels(path, 50_000_000)
        except RequestError as exc:
            assert 400 <= exc.status < 500 and "\n" not in exc.reason
    seconds = time.monotonic() - start
    assert seconds <= SECONDS_PER_EXAMPLE, f"{path.suffix} example took {seconds:.1f} s"
    assert path.read_bytes() == data, "the reader changed its input"


# Failing examples found by this fuzzer, replayed on every run: (seed, mutations, what was wrong).
REGRESSIONS: list[tuple[str, list, str]] = [
    ("tiff", [("flip", 38, 1)], "tiff-zero-size-image-ValueError"),
    ("dicom", [("flip", 28020, 0)], "dicom-unknown-VR-NotImplementedError"),
    ("dicom", [("delete", 254, 14), ("delete", 254, 64)], "dicom-transfer-syntax-garbage-in-a-two-line-error"),
    ("tiff", [("flip", 4, 0)], "tiff-first-IFD-moved-reshape-ValueError"),
    ("tiff-zlib", [("flip", 4, 0)], "tiff-zlib-first-IFD-moved-reshape-ValueError"),
    ("tiff-zlib", [("insert", 19, bytes.fromhex("daf94629daf94629")), ("insert", 254, bytes.fromhex("6b09"))],
     "tiff-zlib-page-chain-loop-read-forever"),
]


@pytest.mark.parametrize("seed, ops, found", REGRESSIONS, ids=[r[2] for r in REGRESSIONS])
def test_regressions(seeds, tmp_path, seed, ops, found):
    check_one(tmp_path / f"case{SUFFIX[seed]}", mutate(seeds[seed], ops))


@pytest.mark.parametrize("seed", SEEDS)
def test_unmutated_seeds_read(seeds, tmp_path, seed):
    path = tmp_path / f"seed{SUFFIX[seed]}"
    path.write_bytes(seeds[seed])
    assert read_image(path).array.shape[:2] == (32, 32)


@pytest.mark.parametrize("seed", SEEDS)
def test_mutated_files_never_break_a_reader(seeds, tmp_path, seed):
    path = tmp_path / f"fuzz{SUFFIX[seed]}"

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=EXAMPLES <= 3000,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(ops=mutations)
    def run(ops):
        check_one(path, mutate(seeds[seed], ops))

    run()
