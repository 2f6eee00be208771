"""The check every command that writes one named file makes before writing it."""

from __future__ import annotations

import sys
from pathlib import Path


def output_refused(output: Path, overwrite: bool, source: str | Path | None = None) -> bool:
    """True (after printing why) when ``output`` exists and ``--overwrite`` was not given, or when it is the
    very file the command reads (``source``), which is never replaced."""
    if not output.exists():
        return False
    if not overwrite:
        print(f"cxrsr: error: {output}: exists; pass --overwrite to replace it", file=sys.stderr)
        return True
    if source is not None and output.resolve() == Path(source).resolve():
        print(f"cxrsr: error: {output}: output is the input file", file=sys.stderr)
        return True
    return False
