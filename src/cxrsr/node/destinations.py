"""Sending a derived instance on: C-STORE to a DICOM AE, STOW-RS to a DICOMweb server, or a copy in a folder.

Each ``send(path)`` either delivers the file or raises :class:`DeliveryError` with a reason that holds no
patient data (statuses, counts, the peer's address): the worker retries later.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path

from .config import Destination
from .spool import fsync_dir, hashed

log = logging.getLogger(__name__)

#: C-STORE statuses that mean the peer keeps the instance (Success and the Warning statuses of PS3.4 B.2.3).
STORED = {0x0000, 0xB000, 0xB006, 0xB007}


class DeliveryError(Exception):
    """A destination did not take an instance (down, refused, or answered a failure status)."""


class DicomDestination:
    """C-STORE SCU. Proposes the instance's own transfer syntax and, after it, Explicit and Implicit VR
    Little Endian; a compressed instance is decompressed when the peer accepts only uncompressed ones."""

    def __init__(self, dest: Destination, calling_ae_title: str, timeout_s: float = 30.0) -> None:
        self.name = dest.spec
        self.dest = dest
        self.calling_ae_title = calling_ae_title
        self.timeout_s = timeout_s

    def send(self, path: Path) -> None:
        import pydicom
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
        from pynetdicom import AE

        ds = pydicom.dcmread(path)
        own = ds.file_meta.TransferSyntaxUID
        syntaxes = list(dict.fromkeys([own, ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
        ae = AE(ae_title=self.calling_ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        ae.connection_timeout = min(self.timeout_s, 10.0)
        ae.add_requested_context(ds.SOPClassUID, syntaxes)
        assoc = ae.associate(self.dest.host, self.dest.port, ae_title=self.dest.ae_title)
        if not assoc.is_established:
            reason = "association rejected" if assoc.is_rejected else "no association (peer down or unreachable)"
            raise DeliveryError(f"{self.dest.ae_title}@{self.dest.host}:{self.dest.port}: {reason}")
        try:
            accepted = [cx.transfer_syntax[0] for cx in assoc.accepted_contexts]
            if not accepted:
                raise DeliveryError(f"{self.name}: the peer accepts none of {len(syntaxes)} transfer syntaxes")
            if own.is_compressed and own not in accepted:
                ds.decompress()
            status = assoc.send_c_store(ds)
        finally:
            if assoc.is_established:
                assoc.release()
        code = int(status.Status) if "Status" in status else None
        if code not in STORED:
            text = "no response" if code is None else f"status 0x{code:04X}"
            raise DeliveryError(f"{self.name}: C-STORE answered {text}")
        log.debug("sent %s to %s: status 0x%04X", hashed(ds.SOPInstanceUID), self.name, code)


class StowDestination:
    """DICOMweb STOW-RS: one instance per POST as multipart/related; type="application/dicom"."""

    def __init__(self, dest: Destination, timeout_s: float = 30.0) -> None:
        self.name = dest.spec
        self.url = dest.url
        self.timeout_s = timeout_s

    def send(self, path: Path) -> None:
        boundary = f"cxrsr-{secrets.token_hex(12)}"
        body = b"".join([
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(),
            path.read_bytes(),
            f"\r\n--{boundary}--\r\n".encode(),
        ])
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        })
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = response.read()
                code = response.status
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"{self.name}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"{self.name}: {type(reason).__name__ if not isinstance(reason, str) else reason}") from None
        if code not in (200, 202):
            raise DeliveryError(f"{self.name}: HTTP {code}")
        try:
            failed = json.loads(answer or b"{}").get("00081198", {}).get("Value", [])  # Failed SOP Sequence
        except (ValueError, AttributeError):
            failed = []
        if failed:
            raise DeliveryError(f"{self.name}: the server refused the instance (Failed SOP Sequence)")


class FolderDestination:
    """A copy named by its SOP Instance UID, written durably: a repeat delivery replaces the earlier copy."""

    def __init__(self, dest: Destination) -> None:
        self.name = dest.spec
        self.folder = Path(dest.folder)

    def send(self, path: Path) -> None:
        import pydicom

        uid = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            target = self.folder / f"{uid}.dcm"
            tmp = self.folder / f".{uid}.{secrets.token_hex(4)}.tmp"
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, target)
            fsync_dir(self.folder)
        except OSError as exc:
            raise DeliveryError(f"{self.name}: cannot write ({exc.strerror or type(exc).__name__})") from None


def make_destination(dest: Destination, calling_ae_title: str, timeout_s: float):
    if dest.kind == "dicom":
        return DicomDestination(dest, calling_ae_title, timeout_s)
    if dest.kind == "stow":
        return StowDestination(dest, timeout_s)
    return FolderDestination(dest)
