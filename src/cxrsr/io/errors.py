"""Errors raised for unusable input files."""

from __future__ import annotations

from pathlib import Path


class InputFileError(Exception):
    """A file cannot be used as input. The message names the file and the reason, on one line."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
