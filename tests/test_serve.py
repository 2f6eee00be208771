"""cxrsr serve: the HTTP API in-process (every format, every refusal, limits, the queue), and a live server
under a bounded load on 127.0.0.1."""

import asyncio
import base64
import io
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image

pytest.importorskip("fastapi")
from dicom_samples import dicom_with_pixels, dicom_without_pixels, pydicom_file  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from cxrsr.serve import ServeConfig, create_app  # noqa: E402
from cxrsr.serve.jobs import InferenceQueue, RequestError  # noqa: E402


@pytest.fixture(scope="module")
def xray(nih_png) -> np.ndarray:
    """A real chest X-ray at 64 x 64, uint8."""
    with Image.open(nih_png) as im:
        return np.asarray(im.convert("L").resize((64, 64), Image.BICUBIC))


@pytest.fixture(scope="module")
def client():
    config = ServeConfig(model="cxr-fidelity", device="cpu", max_upload_mb=1, max_pixels=600 * 600,
                         max_view_pixels=300 * 300, queue_size=2)
    with TestClient(create_app(config)) as c:
        yield c


def encode(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "tiff":
        tifffile.imwrite(buf, array)
    else:
        Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def post(client, data: bytes, name: str = "x.png", **form):
    return client.post("/api/upscale", files={"file": (name, data, "application/octet-stream")}, data=form)


def test_health_models_and_docs(client):
    assert client.get("/api/health").json()["status"] == "ok"
    models = client.get("/api/models").json()
    assert models["default"] == "cxr-fidelity"
    names = {m["name"]: m for m in models["models"]}
    assert {"cxr-fidelity", "cxr-gan"} <= set(names)
    assert names["cxr-fidelity"]["default"] and float(names["cxr-fidelity"]["val_psnr"]) > 39
    assert "/api/upscale" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "not for diagnosis" in page.text and "viewer.js" in page.text
    for asset in ("viewer.js", "viewer.css"):
        assert client.get(f"/static/{asset}").status_code == 200
    assert "http" not in client.get("/static/viewer.js").text.replace("XMLHttpRequest", "")  # no CDN, offline


def test_png_jpeg_tiff_in_keep_bit_depth_and_carry_the_derived_note(client, xray):
    r = post(client, encode(xray, "png"), "chest.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"] == 'attachment; filename="chest_x4.png"'
    assert "not for diagnosis" in r.headers["x-derived-image"]
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.size == (256, 256) and im.mode == "L" and "cxr-fidelity" in str(im.info)

    r = post(client, encode(xray, "jpeg"), "chest.jpg", model="cxr-gan")
    with Image.open(io.BytesIO(r.content)) as im:
        assert r.status_code == 200 and im.size == (256, 256) and "cxr-gan" in str(im.info)

    sixteen = (xray.astype(np.uint16) * 200 + 100)
    r = post(client, encode(sixteen, "tiff"), "chest.tif", format="tiff")
    assert r.status_code == 200 and r.headers["content-type"] == "image/tiff"
    out = tifffile.imread(io.BytesIO(r.content))
    assert out.shape == (256, 256) and out.dtype == np.uint16 and out.max() > 255


def test_dicom_in_gives_a_derived_dicom_or_a_16_bit_png(client, tmp_path):
    src = pydicom_file("CT_small.dcm")
    r = post(client, src.read_bytes(), "CT_small.dcm", format="dcm", window="lung")
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
    ds = pydicom.dcmread(io.BytesIO(r.content))
    original = pydicom.dcmread(src)
    assert (ds.Rows, ds.Columns) == (original.Rows * 4, original.Columns * 4)
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"] and ds.SOPInstanceUID != original.SOPInstanceUID
    r = post(client, src.read_bytes(), "CT_small.dcm", format="png")
    with Image.open(io.BytesIO(r.content)) as im:
        assert r.status_code == 200 and im.size == (512, 512) and np.asarray(im).dtype == np.uint16


def test_compare_returns_input_bicubic_and_sr_at_4x(client, xray, tmp_path):
    mono1 = dicom_with_pixels(tmp_path / "m1.dcm", (xray.astype(np.uint16) * 16), photometric="MONOCHROME1",
                              bits_stored=12)
    for name, data in (("chest.png", encode(xray, "png")), ("m1.dcm", mono1.read_bytes())):
        r = client.post("/api/compare", files={"file": (name, data)}, data={"model": "cxr-fidelity"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["scale"] == 4 and body["model"] == "cxr-fidelity" and "not measured" in body["derived"]
        for key, side in (("input", 64), ("bicubic", 256), ("sr", 256)):
            image = body[key]
            pixels = np.frombuffer(base64.b64decode(image["data"]), dtype="<u2")
            assert (image["width"], image["height"]) == (side, side) and pixels.size == side * side
        assert body["dicom"] == name.endswith(".dcm")
    # MONOCHROME1 comes back in display polarity: the bright (low stored value) lung fields stay dark
    inp = np.frombuffer(base64.b64decode(body["input"]["data"]), dtype="<u2").reshape(64, 64)
    assert np.corrcoef(inp.ravel().astype(float), xray.ravel().astype(float))[0, 1] < -0.9


@pytest.mark.parametrize("case,status,words", [
    ("text", 415, "not a PNG, JPEG, TIFF or DICOM"),
    ("empty", 422, "empty"),
    ("truncated", 422, ""),
    ("dicom without pixels", 422, "no image"),
    ("too many pixels", 422, "exceeds the server's limit"),
    ("too large upload", 413, "larger than the server's limit"),
    ("unknown model", 422, "unknown model"),
    ("model as a path", 422, "unknown model"),
    ("bad format", 422, "format must be"),
    ("dicom out of a png", 422, "DICOM output needs a DICOM input"),
    ("bad window", 422, "window"),
])
def test_bad_requests_get_a_4xx_with_the_reason(client, xray, tmp_path, case, status, words):
    good = encode(xray, "png")
    if case == "text":
        r = post(client, b"patient notes, not an image\n" * 10, "notes.png")
    elif case == "empty":
        r = post(client, b"", "empty.png")
    elif case == "truncated":
        r = post(client, good[: len(good) // 2], "cut.png")
    elif case == "dicom without pixels":
        r = post(client, dicom_without_pixels(tmp_path / "np.dcm").read_bytes(), "np.dcm")
    elif case == "too many pixels":  # a 20000 x 20000 PNG of a few KiB: refused from its header, not decoded
        bomb = Image.new("1", (20000, 20000))
        buf = io.BytesIO()
        bomb.save(buf, format="PNG")
        start = time.perf_counter()
        r = post(client, buf.getvalue(), "bomb.png")
        assert time.perf_counter() - start < 5
    elif case == "too large upload":
        r = post(client, good + os.urandom(2 * 2**20), "big.png")
    elif case == "unknown model":
        r = post(client, good, model="no-such-model")
    elif case == "model as a path":
        r = post(client, good, model=str(Path(__file__).resolve()))
    elif case == "bad format":
        r = post(client, good, format="exe")
    elif case == "dicom out of a png":
        r = post(client, good, format="dcm")
    else:
        r = post(client, good, window="no-such-window")
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and words in r.json()["error"]
    assert client.get("/api/health").status_code == 200


def test_no_upload_or_result_stays_on_disk_and_logs_carry_no_tag_values(xray, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    dcm = dicom_with_pixels(tmp_path / "d.dcm", xray.astype(np.uint16), PatientName="Doe^Jane",
                            PatientID="MRN-424242")
    config = ServeConfig(model="cxr-fidelity", device="cpu")
    with caplog.at_level(logging.DEBUG), TestClient(create_app(config)) as c:
        for name, data, fmt in (("Doe_Jane.dcm", dcm.read_bytes(), "dcm"), ("x.png", encode(xray, "png"), "png"),
                                ("bad.png", b"not an image", "png"),
                                ("big.bin", b"spooled to disk by the multipart parser " * 40000, "png")):
            c.post("/api/upscale", files={"file": (name, data)}, data={"format": fmt})
        c.post("/api/compare", files={"file": ("Doe_Jane.dcm", dcm.read_bytes())})
    assert list((tmp_path / "tmp").iterdir()) == []
    assert "Doe" not in caplog.text and "MRN-424242" not in caplog.text and "upscale" in caplog.text


def test_queue_refuses_beyond_its_size_with_retry_after():
    async def scenario():
        queue = InferenceQueue(size=1)
        slow = asyncio.ensure_future(queue.run(time.sleep, 0.5))
        await asyncio.sleep(0.05)
        with pytest.raises(RequestError) as refused:
            await queue.run(time.sleep, 0)
        await slow
        assert await queue.run(lambda: 7) == 7  # free again
        queue.shutdown()
        return refused.value

    refused = asyncio.run(scenario())
    assert refused.status == 503 and int(refused.headers["Retry-After"]) >= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_server(*args: str):
    """Start ``cxrsr serve`` on 127.0.0.1 and a free port; returns (process, base URL) once it answers."""
    import httpx

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cxrsr", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"cxrsr serve did not start: {proc.stdout.read()[-2000:]}")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def test_load_on_a_live_server_good_and_bad_uploads(xray):
    from cxrsr.serve.loadtest import mixed_uploads, run_load

    proc, url = live_server("--queue", "2")
    try:
        result = run_load(url, mixed_uploads(xray, 12), concurrency=6, timeout=120)
        peak = peak_rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    summary = result.summary()
    assert result.wrong == [] and result.alive, summary
    assert summary["statuses"].get(200, 0) >= 1 and sum(summary["statuses"].values()) == 12
    assert 0 < peak < 8 * 1024, peak  # MiB

