"""The node's durable queue: a folder whose sub-folders are the states of a received instance.

    incoming/    being written; never acknowledged (emptied at start)
    pending/     acknowledged: NAME.dcm as received, NAME.json its delivery state (attempts, next try)
    out/         NAME.dcm, the derived instance of a pending one (a cache: remade if missing)
    done/        NAME.json, one record per delivered instance (hashed UIDs and times, no patient data)
    failed/      NAME.dcm + NAME.json with the reason, after the last delivery attempt
    quarantine/  NAME.dcm + NAME.json, refused on arrival (corrupt or unsupported), never acknowledged

An instance is acknowledged only after its file and the folder entry that names it are on disk (fsync of
the file, rename into pending/, fsync of the folder): after a crash at any moment every acknowledged
instance is in pending/, failed/ or done/. Every move is a rename within one file system.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FOLDERS = ("incoming", "pending", "out", "done", "failed", "quarantine")
#: Folders whose files count against the disk budget (done/ holds only small records).
_BUDGETED = ("incoming", "pending", "out", "failed", "quarantine")


def hashed(uid: object) -> str:
    """A UID as it may appear in logs: 12 hex digits of its SHA-256, never the UID itself."""
    return hashlib.sha256(str(uid).encode()).hexdigest()[:12]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary name in the same folder, fsync it, rename it, fsync the folder."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@dataclass(frozen=True)
class Item:
    """One received instance, named by its arrival time (ns) and a random suffix: names sort by arrival."""

    name: str
    path: Path  # NAME.dcm in the folder of its current state

    @property
    def received(self) -> float:
        return int(self.name.split("-", 1)[0]) / 1e9


class Spool:
    def __init__(self, root: str | Path, budget_bytes: int = 4 << 30, min_free_bytes: int = 512 << 20) -> None:
        self.root = Path(root)
        self.budget_bytes = budget_bytes
        self.min_free_bytes = min_free_bytes
        self._lock = threading.Lock()

    def folder(self, state: str) -> Path:
        return self.root / state

    def open(self) -> "Spool":
        """Create the folders; remove what an earlier process left half-received (never acknowledged)."""
        for state in FOLDERS:
            self.folder(state).mkdir(parents=True, exist_ok=True)
        fsync_dir(self.root)
        for entry in os.scandir(self.folder("incoming")):
            os.unlink(entry.path)
        for state in ("pending", "done", "failed", "out"):  # temporary files of interrupted writes
            for entry in os.scandir(self.folder(state)):
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    os.unlink(entry.path)
        return self

    # ------------------------------------------------------------------------------------------ receiving

    def usage(self) -> int:
        total = 0
        for state in _BUDGETED:
            for entry in os.scandir(self.folder(state)):
                try:
                    total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:  # moved meanwhile
                    pass
        return total

    def receive(self, data: bytes) -> Item | None:
        """Write ``data`` (a DICOM file) to incoming/ and fsync it; None when it does not fit the budget or
        the free disk space (the caller answers Out of Resources and nothing is written)."""
        with self._lock:  # associations run in parallel: one budget check and write at a time
            if self.usage() + len(data) > self.budget_bytes:
                return None
            if shutil.disk_usage(self.root).free - len(data) < self.min_free_bytes:
                return None
            name = f"{time.time_ns():019d}-{secrets.token_hex(4)}"
            path = self.folder("incoming") / f"{name}.dcm"
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        return Item(name, path)

    def accept(self, item: Item) -> Item:
        """Move a received file into pending/ durably: after this returns it may be acknowledged."""
        target = self.folder("pending") / item.path.name
        os.replace(item.path, target)
        fsync_dir(target.parent)
        return Item(item.name, target)

    def quarantine(self, item: Item, reason: str, status: int) -> None:
        """Keep a refused file, with why, for someone to look at; it was never acknowledged."""
        target = self.folder("quarantine") / item.path.name
        os.replace(item.path, target)
        write_durably(target.with_suffix(".json"),
                      json.dumps({"reason": reason, "status": status, "time": time.time()}).encode())

    # ------------------------------------------------------------------------------------------- the queue

    def pending(self) -> list[Item]:
        folder = self.folder("pending")
        names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".dcm") and not e.name.startswith("."))
        return [Item(n.removesuffix(".dcm"), folder / n) for n in names]

    def state(self, item: Item) -> dict:
        try:
            return json.loads((self.folder("pending") / f"{item.name}.json").read_text())
        except (OSError, ValueError):
            return {}

    def save_state(self, item: Item, state: dict) -> None:
        write_durably(self.folder("pending") / f"{item.name}.json", json.dumps(state).encode())

    def out_path(self, item: Item) -> Path:
        return self.folder("out") / f"{item.name}.dcm"

    def is_done(self, item: Item) -> bool:
        return (self.folder("done") / f"{item.name}.json").exists()

    def finish(self, item: Item, record: dict) -> None:
        """Record delivery, then drop the source, its state and its derived file. A crash in between leaves
        the record and the source: the next start sees the record and only cleans up."""
        record = dict(record, received=item.received, done=time.time())
        write_durably(self.folder("done") / f"{item.name}.json", json.dumps(record).encode())
        for path in (item.path, self.folder("pending") / f"{item.name}.json", self.out_path(item)):
            path.unlink(missing_ok=True)
        fsync_dir(self.folder("pending"))

    def fail(self, item: Item, state: dict) -> None:
        """After the last attempt: the source and its state (with the reason) move to failed/."""
        folder = self.folder("failed")
        write_durably(folder / f"{item.name}.json", json.dumps(state).encode())
        os.replace(item.path, folder / item.path.name)
        (self.folder("pending") / f"{item.name}.json").unlink(missing_ok=True)
        self.out_path(item).unlink(missing_ok=True)
        fsync_dir(folder)
        fsync_dir(self.folder("pending"))

    def requeue(self) -> int:
        """Move every failed instance back to pending/ with a fresh count of attempts; returns how many."""
        count = 0
        failed = self.folder("failed")
        for path in sorted(failed.glob("*.dcm")):
            target = self.folder("pending") / path.name
            os.replace(path, target)
            (failed / f"{path.stem}.json").unlink(missing_ok=True)
            count += 1
        fsync_dir(self.folder("pending"))
        fsync_dir(failed)
        return count

    # ---------------------------------------------------------------------------------------------- status

    def status(self) -> dict:
        """Counts by state and the oldest pending arrival (no patient data: names are times)."""
        counts = {}
        for state in ("pending", "done", "failed", "quarantine"):
            suffix = ".json" if state == "done" else ".dcm"
            counts[state] = sum(1 for e in os.scandir(self.folder(state))
                                if e.name.endswith(suffix) and not e.name.startswith("."))
        pending = self.pending()
        oldest = pending[0].received if pending else None
        return {
            "received": counts["pending"] + counts["done"] + counts["failed"],
            "done": counts["done"],
            "pending": counts["pending"],
            "failed": counts["failed"],
            "refused": counts["quarantine"],
            "oldest_pending": oldest,
            "oldest_pending_age_s": None if oldest is None else round(time.time() - oldest, 1),
            "spool_bytes": self.usage(),
        }
