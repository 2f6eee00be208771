"""Deterministic, patient-disjoint train / val / test splits."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

from ..io import INPUT_SUFFIXES

#: NIH ChestX-ray14 names are PATIENT_FOLLOWUP.png.
NIH_PATIENT_REGEX = r"^(\d+)_\d+"


def list_image_files(source: str | Path) -> list[Path]:
    """Images in a folder (recursively), or the paths listed one per line in a text file."""
    source = Path(source)
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES)
    if source.is_file():
        base = source.parent
        lines = [line.strip() for line in source.read_text().splitlines()]
        return [Path(line) if Path(line).is_absolute() else base / line for line in lines if line and not line.startswith("#")]
    raise FileNotFoundError(f"{source}: no such folder or list file")


def patient_ids(files: list[Path], regex: str = NIH_PATIENT_REGEX, csv_file: str | Path | None = None,
                csv_column: str = "patient_id", csv_name_column: str = "image") -> dict[Path, str]:
    """Patient of each file: from a CSV (image name -> patient column) or from a regex group on the name."""
    if csv_file is not None:
        with open(csv_file, newline="") as f:
            table = {row[csv_name_column]: row[csv_column] for row in csv.DictReader(f)}
        missing = [p.name for p in files if p.name not in table]
        if missing:
            raise ValueError(f"{csv_file}: no patient for {len(missing)} file(s), e.g. {missing[0]}")
        return {p: table[p.name] for p in files}
    pattern = re.compile(regex)
    out = {}
    for p in files:
        m = pattern.search(p.name)
        if m is None:
            raise ValueError(f"{p.name}: file name does not match the patient regex {regex!r}")
        out[p] = m.group(1) if m.groups() else m.group(0)
    return out


def split_by_patient(files: list[Path], fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
                     seed: int = 0, **id_options) -> dict[str, list[Path]]:
    """Assign every patient to train / val / test by a hash of (seed, patient): deterministic, independent of
    file order, and stable when files are added. All images of one patient land in the same split."""
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    ids = patient_ids(files, **id_options)
    splits: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
    for p in sorted(files):
        digest = hashlib.sha256(f"{seed}:{ids[p]}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        name = "train" if u < fractions[0] else "val" if u < fractions[0] + fractions[1] else "test"
        splits[name].append(p)
    return splits


def write_split(splits: dict[str, list[Path]], path: str | Path) -> None:
    Path(path).write_text(json.dumps({k: [str(p) for p in v] for k, v in splits.items()}, indent=1) + "\n")


def read_split(path: str | Path) -> dict[str, list[Path]]:
    return {k: [Path(p) for p in v] for k, v in json.loads(Path(path).read_text()).items()}
