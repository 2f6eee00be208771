"""Writing files so that a partial file never appears under its final name.

A file is written to a hidden temporary name in the same folder and renamed when complete. The temporary
name says which host and process wrote it: a process killed mid-write (``kill -9``, power loss) leaves its
temporary file behind, and the next write of the same output removes it once that process is gone.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Characters of the final name kept in the temporary name: the temporary name must fit the file system's
#: 255-byte limit even when the final name nearly fills it.
_NAME_KEPT = 64


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary path in the same folder as ``path``; when the block succeeds, give it the
    usual permissions and rename it to ``path``; when it fails, remove it."""
    path = Path(path)
    remove_stale_parts(path)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path) + f"{_host()}-{os.getpid()}-", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_parts(path: str | Path) -> list[Path]:
    """Remove temporary files that a process of this host, no longer running, left while writing ``path``.
    Temporary files of live processes and of other hosts (a shared folder) are left alone."""
    path = Path(path)
    prefix = _prefix(path)
    pattern = re.compile(re.escape(prefix) + r"(?P<host>.+)-(?P<pid>\d+)-[^/]*\.part")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and match["host"] == _host() and not _alive(int(match["pid"])):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def _prefix(path: Path) -> str:
    name = path.name.encode("utf-8", "surrogateescape")[:_NAME_KEPT].decode("utf-8", "ignore")
    return f".{name}.cxrsr-"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:40] or "host"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
