"""The DICOM node against real components: Orthanc (with its DICOMweb plugin) as the PACS, dcmtk's storescu
and echoscu as modalities, real chest X-rays (RG1_UNCR from pydicom-data, its JPEG-LS and JPEG 2000 copies,
crops of it and of NIH radiographs, a CT slice). Each test starts its own Orthanc and node on free loopback
ports and stops them by PID.

Crops keep the tests at a few minutes on a 2-core CPU; the full RG1_UNCR goes through once, and the pixel
comparison with ``cxrsr upscale`` uses the shipped weights.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless, generate_uid

from conftest import CXR, require
from cxrsr.io.dicom import derived_uid
from dicom_samples import pydicom_file

pytest.importorskip("pynetdicom")

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
NODE_AET = "CXRSR"


def tool(name: str) -> str:
    """A system tool the tests need (scripts/install-system-deps.sh installs them); skipped without it,
    except where CXRSR_REQUIRE_SHARED=1 (CI), where its absence fails."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (scripts/install-system-deps.sh)"
        if os.environ.get("CXRSR_REQUIRE_SHARED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# ------------------------------------------------------------------------------------------------ Orthanc

class Orthanc:
    """An Orthanc in the foreground with a config of its own: temp storage, loopback only, DICOMweb on, the
    node declared as a modality it may send to."""

    def __init__(self, folder: Path, node_port: int) -> None:
        self.exe = tool("Orthanc")
        if not DICOMWEB_PLUGIN.exists():
            tool("orthanc-dicomweb-plugin-missing")  # same skip / fail rule as a missing tool
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.http_port, self.dicom_port = free_port(), free_port()
        self.aet = "ORTHANC"
        config = {
            "Name": "cxrsr-test", "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": self.aet,
            "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "HttpsVerifyPeers": False,
            "Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": {"cxrsr": [NODE_AET, "127.0.0.1", node_port]},
            "DicomScuTimeout": 30, "StableAge": 1, "ConcurrentJobs": 1,
        }
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps(config))
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> "Orthanc":
        self.log = open(self.folder / "orthanc.log", "ab")
        self.proc = subprocess.Popen([self.exe, str(self.config)], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._up, 60, "Orthanc to answer")
        return self

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"Orthanc exited: {(self.folder / 'orthanc.log').read_text()[-2000:]}")
        try:
            self.get("/system")
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def request(self, path: str, data: bytes | None = None, method: str | None = None) -> bytes:
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read()

    def get(self, path: str):
        return json.loads(self.request(path))

    def post(self, path: str, body) -> object:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return json.loads(self.request(path, data, "POST") or b"null")

    def derived(self) -> list[dict]:
        """Simplified tags of every instance cxrsr made (its series description says so)."""
        out = []
        for iid in self.get("/instances"):
            tags = self.get(f"/instances/{iid}/simplified-tags")
            if "by cxrsr" in str(tags.get("SeriesDescription", "")):
                tags["_id"] = iid
                out.append(tags)
        return out

    def dataset(self, iid: str):
        from io import BytesIO

        return pydicom.dcmread(BytesIO(self.request(f"/instances/{iid}/file")))

    def lookup(self, uid: str) -> list:
        return [r for r in self.post("/tools/lookup", uid.encode()) if r.get("Type") == "Instance"]


@pytest.fixture
def orthanc_factory(tmp_path):
    started = []

    def make(node_port: int) -> Orthanc:
        server = Orthanc(tmp_path / f"orthanc{len(started)}", node_port)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


# --------------------------------------------------------------------------------------------------- node

class NodeProcess:
    """``cxrsr dicom-node`` in a process of its own, as an operator runs it."""

    def __init__(self, folder: Path, args: list[str], port: int | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.spool = folder / "spool"
        self.args = ["--ae-title", NODE_AET, "--port", str(self.port), "--spool", str(self.spool),
                     "--device", "cpu", *args]
        self.proc = None

    def start(self) -> "NodeProcess":
        self.log = open(self.folder / "node.log", "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "cxrsr", "dicom-node", *self.args], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        wait_for(self._up, 180, "the node to answer C-ECHO", interval=0.5)
        return self

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the node exited with {self.proc.returncode}: {self.log_text()[-3000:]}")
        return echo(self.port) == 0x0000

    def log_text(self) -> str:
        return (self.folder / "node.log").read_text(errors="replace")

    def status(self) -> dict:
        out = subprocess.run([sys.executable, "-m", "cxrsr", "dicom-node", "status", "--json", "--spool",
                              str(self.spool)], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    def kill(self, sig=signal.SIGKILL) -> int:
        os.kill(self.proc.pid, sig)
        return self.proc.wait(120)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)


@pytest.fixture
def node_factory(tmp_path):
    started = []

    def make(args: list[str], name: str = "node", port: int | None = None) -> NodeProcess:
        node = NodeProcess(tmp_path / name, args, port)
        started.append(node)
        return node

    yield make
    for node in started:
        if node.proc is not None and node.proc.poll() is None:
            os.kill(node.proc.pid, signal.SIGKILL)
            node.proc.wait()


def echo(port: int, calling: str = "ECHOSCU") -> int | None:
    """C-ECHO with dcmtk's echoscu: 0 when the node answered Success."""
    exe = tool("echoscu")
    result = subprocess.run([exe, "-aet", calling, "-aec", NODE_AET, "-to", "5", "127.0.0.1", str(port)],
                            capture_output=True, text=True)
    return 0 if result.returncode == 0 else None


#: storescu proposes only uncompressed syntaxes unless told: the option that proposes each file's own.
_PROPOSE = {"1.2.840.10008.1.2.4.80": "-xt", "1.2.840.10008.1.2.4.81": "-xu", "1.2.840.10008.1.2.4.90": "-xv",
            "1.2.840.10008.1.2.4.91": "-xw", "1.2.840.10008.1.2.4.70": "-xs", "1.2.840.10008.1.2.5": "-xr"}


def storescu(port: int, files: list[Path], calling: str = "STORESCU", check: bool = True) -> str:
    """Send ``files`` with dcmtk's storescu, one association per transfer syntax; returns its output."""
    exe = tool("storescu")
    groups: dict[str, list[Path]] = {}
    for path in files:
        syntax = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        groups.setdefault(_PROPOSE.get(syntax, ""), []).append(path)
    output = ""
    for flag, group in groups.items():
        result = subprocess.run([exe, "-v", "-R", *([flag] if flag else []), "-aet", calling, "-aec", NODE_AET,
                                 "127.0.0.1", str(port), *map(str, group)], capture_output=True, text=True,
                                timeout=300)
        output += result.stdout + result.stderr
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
    return output


def node_args(orthanc: Orthanc, weights: str, *extra: str) -> list[str]:
    return ["--forward", f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}", "--weights", weights,
            "--retry-base-s", "0.2", "--retry-max-s", "1", "--max-attempts", "1000", *extra]


# ------------------------------------------------------------------------------------------------ samples

def crop(src: Path, dst: Path, box: tuple[int, int, int, int], series: str | None = None) -> Path:
    """A crop of a real DICOM with its whole header; a new SOP Instance UID (and series, when given)."""
    ds = pydicom.dcmread(src)
    y, x, h, w = box
    pixels = np.ascontiguousarray(ds.pixel_array[y:y + h, x:x + w])
    ds.PixelData = pixels.tobytes()
    ds.Rows, ds.Columns = pixels.shape
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if series:
        ds.SeriesInstanceUID = series
    ds.save_as(dst, enforce_file_format=True)
    return dst


def png_as_cr(png: Path, dst: Path, size: int | None, study: str, series: str, number: int) -> Path:
    """A real NIH radiograph (8-bit PNG) wrapped as a CR instance."""
    from dicom_samples import base_dataset

    with Image.open(png) as im:
        im = im.convert("L")
        if size:
            side = min(im.size)
            im = im.crop((0, 0, side, side)).resize((size, size), Image.BICUBIC)
        pixels = np.asarray(im)
    ds = base_dataset("CR")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.InstanceNumber = number
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.ImagerPixelSpacing = [0.143, 0.143]
    ds.PixelData = pixels.tobytes()
    ds.save_as(dst, enforce_file_format=True)
    return dst


@pytest.fixture(scope="session")
def samples(tmp_path_factory, rg1_dicom) -> dict[str, Path]:
    """Real chest DICOMs: RG1_UNCR, 128x128 crops of it (one series), their JPEG-LS (dcmtk) and JPEG 2000
    (pydicom) copies, and a CT slice."""
    folder = tmp_path_factory.mktemp("samples")
    series = generate_uid()
    out = {"rg1": rg1_dicom, "ct": pydicom_file("CT_small.dcm")}
    for i in range(6):
        out[f"crop{i}"] = crop(rg1_dicom, folder / f"crop{i}.dcm", (600 + 40 * i, 500 + 30 * i, 128, 128), series)
    subprocess.run([tool("dcmcjpls"), str(out["crop0"]), str(folder / "crop_jls.dcm")], check=True)
    out["jls"] = folder / "crop_jls.dcm"
    j2k = pydicom.dcmread(crop(rg1_dicom, folder / "crop_j2k_src.dcm", (900, 700, 128, 128), series))
    j2k.compress(JPEG2000Lossless)
    j2k.save_as(folder / "crop_j2k.dcm", enforce_file_format=True)
    out["j2k"] = folder / "crop_j2k.dcm"
    return out


# -------------------------------------------------------------------------------------------------- tests

def source_of(ds, sources: dict[str, pydicom.Dataset]):
    return sources[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]


def test_derived_series_arrive_in_orthanc_with_the_right_tags(orthanc_factory, node_factory, samples, tiny_weights,
                                                               tmp_path):
    """RG1_UNCR, crops of it (one series) and their JPEG-LS / JPEG 2000 copies, and a CT slice, sent by storescu:
    one derived instance per source instance in Orthanc, one derived series per source series, 4x, the
    derived-instance tags; the node's log holds no patient data."""
    from test_dicom import dciodvfy_errors

    port = free_port()
    pacs = orthanc_factory(port)
    copies = tmp_path / "copies"
    node = node_factory(node_args(pacs, tiny_weights, "--forward", f"folder:{copies}"), port=port).start()
    files = [samples[k] for k in ("rg1", "crop1", "crop2", "jls", "j2k", "ct")]
    storescu(port, files)
    sources = {str(pydicom.dcmread(f).SOPInstanceUID): pydicom.dcmread(f) for f in files}
    assert len(sources) == 6
    derived = wait_for(lambda: (d := pacs.derived()) and len(d) == 6 and d, 300, "6 derived instances in Orthanc")
    weights = Path(tiny_weights).name
    series = set()
    for tags in derived:
        ds = pacs.dataset(tags["_id"])
        src = source_of(ds, sources)
        assert (ds.Rows, ds.Columns) == (src.Rows * 4, src.Columns * 4)
        assert ds.pixel_array.shape == (src.Rows * 4, src.Columns * 4)
        for key in ("StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "PatientSex",
                    "AccessionNumber", "Modality", "SOPClassUID", "BitsStored", "PixelRepresentation",
                    "PhotometricInterpretation", "BurnedInAnnotation"):
            assert ds.get(key) == src.get(key), key
        assert ds.SOPInstanceUID == derived_uid("instance", src.SOPInstanceUID, 4, weights)
        assert ds.SeriesInstanceUID == derived_uid("series", src.SeriesInstanceUID, 4, weights)
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert "x4" in ds.SeriesDescription and "not for diagnosis" in ds.SeriesDescription
        assert ds.DerivationCodeSequence[0].CodeValue == "113085"
        equipment = ds.ContributingEquipmentSequence[-1]
        assert equipment.Manufacturer == "cxrsr" and f"weights {weights}" in equipment.SoftwareVersions
        assert equipment.PurposeOfReferenceCodeSequence[0].CodeMeaning == "Processing Algorithm"
        for key in ("PixelSpacing", "ImagerPixelSpacing"):
            if key in src:
                assert np.allclose([float(v) for v in ds[key].value], [float(v) / 4 for v in src[key].value])
        series.add((src.SeriesInstanceUID, ds.SeriesInstanceUID))
    assert len(series) == len({s for s, _ in series}) == len({d for _, d in series}) == 3
    assert len(pacs.get("/series")) == 3  # the sources never went to Orthanc: only the derived series are there
    rg1 = sources[str(pydicom.dcmread(samples["rg1"]).SOPInstanceUID)]
    copy = copies / f"{derived_uid('instance', rg1.SOPInstanceUID, 4, weights)}.dcm"
    assert dciodvfy_errors(copy) <= dciodvfy_errors(samples["rg1"])
    status = node.status()
    assert (status["received"], status["done"], status["pending"], status["failed"]) == (6, 6, 0, 0)
    text = node.log_text()
    for src in sources.values():
        for key in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "SOPInstanceUID",
                    "SeriesInstanceUID", "StudyDate", "InstitutionName"):
            value = str(src.get(key, "") or "")
            if len(value) > 3:
                assert value not in text, key


def test_pixels_equal_cxrsr_upscale_with_the_shipped_weights(orthanc_factory, node_factory, samples, tmp_path):
    """What the node stores in the PACS is what ``cxrsr upscale`` writes for the same file: same pixels, same
    UIDs (the same code path, deterministic UIDs)."""
    from cxrsr.cli import main

    port = free_port()
    pacs = orthanc_factory(port)
    node_factory(node_args(pacs, "cxr-fidelity"), port=port).start()
    files = [samples[k] for k in ("crop3", "jls", "j2k", "ct")]
    storescu(port, files)
    out = tmp_path / "cli"
    assert main(["upscale", *map(str, files), "-o", str(out), "--device", "cpu", "--weights", "cxr-fidelity"]) == 0
    wait_for(lambda: len(pacs.derived()) == 4, 300, "4 derived instances in Orthanc")
    by_uid = {}
    for tags in pacs.derived():
        ds = pacs.dataset(tags["_id"])
        by_uid[ds.SOPInstanceUID] = ds
    for f in files:
        expected = pydicom.dcmread(out / f"{f.stem}_x4.dcm")
        got = by_uid[expected.SOPInstanceUID]
        assert got.SeriesInstanceUID == expected.SeriesInstanceUID
        assert np.array_equal(got.pixel_array, expected.pixel_array), f.name


def test_orthanc_sends_a_study_and_the_derived_series_comes_back(orthanc_factory, node_factory, samples,
                                                                 tiny_weights):
    """The real loop: Orthanc stores a study, is told to send it to the node (its DicomModalities entry), and
    the node forwards the derived series into the same study over DICOMweb STOW-RS."""
    port = free_port()
    pacs = orthanc_factory(port)
    node_factory(["--forward", f"{pacs.url}/dicom-web/studies", "--weights", tiny_weights], port=port).start()
    for key in ("crop4", "crop5"):
        pacs.post("/instances", samples[key].read_bytes())
    (study,) = pacs.get("/studies")
    job = pacs.post("/modalities/cxrsr/store", {"Resources": [study], "Synchronous": True})
    assert job.get("FailedInstancesCount", 0) == 0 and job.get("InstancesCount") == 2, job
    wait_for(lambda: len(pacs.derived()) == 2, 180, "the derived series back in Orthanc")
    assert pacs.get("/studies") == [study]
    series = pacs.get(f"/studies/{study}/series")
    assert len(series) == 2  # the source series and its derived series
    descriptions = sorted(str(s["MainDicomTags"].get("SeriesDescription", "")) for s in series)
    assert any("not for diagnosis" in d for d in descriptions)


def test_orthanc_stopped_mid_batch_everything_arrives_after_it_restarts(orthanc_factory, node_factory, samples,
                                                                      tiny_weights):
    port = free_port()
    pacs = orthanc_factory(port)
    node = node_factory(node_args(pacs, tiny_weights), port=port).start()
    storescu(port, [samples["crop0"], samples["crop1"]])
    wait_for(lambda: len(pacs.derived()) == 2, 120, "the first two derived instances")
    pacs.stop()
    storescu(port, [samples[k] for k in ("crop2", "crop3", "crop4", "ct")])  # acknowledged while the PACS is down
    wait_for(lambda: "attempt 2 of" in node.log_text(), 60, "the node to retry")
    assert node.status()["pending"] == 4
    pacs.start()
    wait_for(lambda: len(pacs.derived()) == 6, 180, "all six derived instances after Orthanc restarted")
    wait_for(lambda: node.status()["pending"] == 0, 30, "an empty queue")
    assert node.status()["failed"] == 0


@pytest.fixture(scope="session")
def nih_batch(tmp_path_factory) -> list[Path]:
    """16 real NIH radiographs as 128x128 CR instances of one study."""
    pngs = sorted(require(CXR / "nih" / "test").glob("*.png"))[:16]
    folder = tmp_path_factory.mktemp("nih")
    study, series = generate_uid(), generate_uid()
    return [png_as_cr(p, folder / f"{p.stem}.dcm", 128, study, series, i + 1) for i, p in enumerate(pngs)]


def test_kill_9_mid_batch_then_restart_delivers_each_acknowledged_instance_once(orthanc_factory, node_factory,
                                                                               nih_batch, tiny_weights, tmp_path):
    port = free_port()
    pacs = orthanc_factory(port)
    node = node_factory(node_args(pacs, tiny_weights), port=port).start()
    log = tmp_path / "storescu.log"
    with open(log, "w") as out:
        sender = subprocess.Popen([tool("storescu"), "-v", "-aet", "STORESCU", "-aec", NODE_AET, "127.0.0.1",
                                   str(port), *map(str, nih_batch)], stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: log.read_text().count("(Success)") >= 4, 120, "four acknowledged stores")
        node.kill(signal.SIGKILL)
        sender.wait(60)
    stored, current = [], None
    for line in log.read_text().splitlines():
        if "Sending file:" in line:
            current = line.split("Sending file:", 1)[1].strip()
        elif "Received Store Response (Success)" in line and current:
            stored.append(Path(current))
    assert len(stored) >= 4
    restarted = node_factory(node_args(pacs, tiny_weights), name="node", port=port).start()
    wait_for(lambda: restarted.status()["pending"] == 0, 180, "the restarted node to empty its queue")
    weights = Path(tiny_weights).name
    for path in stored:
        uid = derived_uid("instance", pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID, 4, weights)
        assert len(pacs.lookup(uid)) == 1, path.name
    # a repeat of the whole batch replaces, never duplicates: one derived instance per source instance
    storescu(port, nih_batch)
    wait_for(lambda: restarted.status()["pending"] == 0 and restarted.status()["done"] >= len(stored) + 16, 180,
             "the repeat batch")
    assert len(pacs.derived()) == 16
    assert len({t["SeriesInstanceUID"] for t in pacs.derived()}) == 1
    # SIGTERM: a clean stop that keeps the spool
    assert restarted.kill(signal.SIGTERM) == 0
    assert restarted.status()["done"] >= 16


def scu_store(port: int, ds, calling: str = "STORESCU") -> int:
    """C-STORE with pynetdicom as SCU, to read the exact status the node answers."""
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.add_requested_context(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def test_refusals_and_the_node_keeps_answering(node_factory, samples, tiny_weights, tmp_path):
    """Unknown calling AE, unsupported SOP class, corrupt pixel data, a header over the pixel limit and a
    store past the spool budget are each refused; the node answers C-ECHO after each."""
    copies = tmp_path / "copies"
    node = node_factory(["--forward", f"folder:{copies}", "--weights", tiny_weights, "--allow", "STORESCU",
                         "--allow", "ECHOSCU", "--max-pixels", "1000000", "--spool-budget-mb", "4"]).start()
    quarantine = node.spool / "quarantine"

    output = storescu(node.port, [samples["crop0"]], calling="INTRUDER", check=False)
    assert "Association Rejected" in output
    assert echo(node.port) == 0

    output = storescu(node.port, [pydicom_file("MR_small.dcm")], check=False)
    assert "Received Store Response (Success)" not in output and "no acceptable presentation context" in output.lower()
    assert echo(node.port) == 0

    corrupt = pydicom.dcmread(samples["crop1"])
    corrupt.PixelData = corrupt.PixelData[: len(corrupt.PixelData) // 2]
    assert scu_store(node.port, corrupt) == 0xC000
    assert len(list(quarantine.glob("*.dcm"))) == 1
    assert echo(node.port) == 0

    huge = pydicom.dcmread(samples["crop2"])
    huge.Rows = huge.Columns = 30000  # 900 megapixels claimed, a few kilobytes sent
    assert scu_store(node.port, huge) == 0xA701
    assert len(list(quarantine.glob("*.dcm"))) == 2
    assert echo(node.port) == 0

    assert scu_store(node.port, pydicom.dcmread(samples["rg1"])) == 0xA700  # 7 MB against a 4 MB budget
    assert len(list(quarantine.glob("*.dcm"))) == 2 and not list((node.spool / "incoming").iterdir())
    assert echo(node.port) == 0

    assert scu_store(node.port, pydicom.dcmread(samples["crop3"])) == 0x0000
    wait_for(lambda: len(list(copies.glob("*.dcm"))) == 1, 60, "the accepted instance in the folder")
    status = node.status()
    assert (status["received"], status["refused"], status["done"]) == (1, 2, 1)


def test_config_failed_folder_and_requeue(tmp_path, samples, tiny_weights, capsys):
    """Configuration refusals; a destination that stays down: the instance lands in failed/ with its reason,
    ``status`` counts it, ``requeue`` puts it back."""
    from cxrsr import Upscaler
    from cxrsr.cli import main
    from cxrsr.node import ConfigError, load_config
    from cxrsr.node.destinations import make_destination
    from cxrsr.node.spool import Spool
    from cxrsr.node.worker import Worker

    with pytest.raises(ConfigError, match="loopback"):
        load_config(None, {"host": "0.0.0.0", "forward": ["folder:x"]})
    with pytest.raises(ConfigError, match="AE title"):
        load_config(None, {"ae_title": "A" * 17, "forward": ["folder:x"]})
    toml = tmp_path / "node.toml"
    toml.write_text(f'ae_title = "NODE1"\nhost = "0.0.0.0"\nallow = ["PACS"]\nspool = "{tmp_path / "spool"}"\n'
                    'forward = ["PACS@10.0.0.5:104", "http://pacs:8042/dicom-web/studies"]\n')
    config = load_config(toml, {"port": 11113})
    assert (config.ae_title, config.port, config.allow) == ("NODE1", 11113, ("PACS",))
    assert [d.kind for d in config.forward] == ["dicom", "stow"]
    import ipaddress

    from cxrsr.node.scp import _host_allowed

    nets = [ipaddress.ip_network("10.1.2.0/24"), ipaddress.ip_network("127.0.0.1")]
    assert _host_allowed("10.1.2.7", nets) and _host_allowed("::ffff:127.0.0.1", nets)
    assert not _host_allowed("10.1.3.7", nets) and not _host_allowed("not-an-ip", nets)

    spool = Spool(tmp_path / "spool").open()
    item = spool.accept(spool.receive(samples["crop0"].read_bytes()))
    dead = load_config(None, {"forward": [f"DOWN@127.0.0.1:{free_port()}"]}).forward[0]
    upscaler = Upscaler.from_pretrained(tiny_weights, device="cpu")
    worker = Worker(spool, upscaler, [make_destination(dead, "CXRSR", 2.0)], max_attempts=2, retry_base_s=0.0)
    assert worker.process(item) == "retry"
    assert worker.process(spool.pending()[0]) == "failed"
    reason = json.loads((spool.folder("failed") / f"{item.name}.json").read_text())["reason"]
    assert "DOWN@127.0.0.1" in reason
    assert main(["dicom-node", "status", "--spool", str(tmp_path / "spool")]) == 0
    assert "failed 1" in capsys.readouterr().out
    assert main(["dicom-node", "requeue", "--config", str(toml)]) == 0
    assert "1 failed instance(s) re-queued" in capsys.readouterr().out
    assert [p.name for p in spool.pending()] == [item.name]
