"""A labelled training folder: its images, their classes and patients, and the patient-level split."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from xscan.classes import CLASS_NAMES
from xscan.walk import find_scans

_PATIENT_RULES = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),
    re.compile(r"^(NORMAL2-IM-\d+)-", re.IGNORECASE),
    re.compile(r"^(IM-\d+)-", re.IGNORECASE),
)


@dataclass(frozen=True)
class LabelledScan:
    path: Path
    label: int  # 0 NORMAL, 1 PNEUMONIA
    patient_id: str


def patient_id(path: Path) -> str:
    """The patient a file name belongs to; a name that matches no rule is its own patient."""
    name = path.name
    for rule in _PATIENT_RULES:
        match = rule.match(name)
        if match:
            return match.group(1).lower()
    return f"file:{path.stem.lower()}"


def find_labelled_scans(data_dir: Path) -> list[LabelledScan]:
    """Every image below DATA_DIR/NORMAL and DATA_DIR/PNEUMONIA (folder names case-insensitive)."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir} is not a folder")
    class_dirs = {p.name.upper(): p for p in sorted(data_dir.iterdir()) if p.is_dir()}
    missing = [name for name in CLASS_NAMES if name not in class_dirs]
    if missing:
        raise FileNotFoundError(f"{data_dir} has no sub-folder {' or '.join(missing)} (one folder per class)")
    return [
        LabelledScan(path, label, patient_id(path))
        for label, name in enumerate(CLASS_NAMES)
        for path in find_scans(class_dirs[name]).scans
    ]


def _patient_fraction(patient: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{patient}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_patient(
    scans: list[LabelledScan], val_fraction: float, seed: int
) -> tuple[list[LabelledScan], list[LabelledScan]]:
    """Split into (train, validation) so that no patient has images on both sides.

    Each patient falls on the validation side when a seeded hash of its id is below
    `val_fraction`: stable, independent of file order, and never splits a patient.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError("val_fraction must lie strictly between 0 and 1")
    train, validation = [], []
    for scan in scans:
        side = validation if _patient_fraction(scan.patient_id, seed) < val_fraction else train
        side.append(scan)
    return train, validation
