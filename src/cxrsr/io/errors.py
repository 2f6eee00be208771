"""Errors raised for unusable input files."""

from __future__ import annotations

import re
from pathlib import Path

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class InputFileError(Exception):
    """A file cannot be used as input. The message names the file and the reason, on one line: control
    characters in the reason (text quoted from a damaged file's header) become spaces."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = " ".join(_CONTROL.sub(" ", reason).split())
        super().__init__(f"{self.path}: {self.reason}")
