"""A labelled training folder: its images, their classes and patients, and the patient-level split."""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from xscan.errors import TrainingDataError
from xscan.input.formats import Kind, kind_by_name
from xscan.input.walk import find_scans
from xscan.model.classes import CLASS_NAMES

_PATIENT_RULES = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),
    re.compile(r"^(NORMAL2-IM-\d+)-", re.IGNORECASE),
    re.compile(r"^(IM-\d+)-", re.IGNORECASE),
    re.compile(r"^(\d{8})_\d{3}\.", re.IGNORECASE),  # NIH ChestX-ray14: patient, then follow-up number
)
PER_FILE = "file:"  # the prefix of a patient id that is only the file's own name


@dataclass(frozen=True)
class LabelledScan:
    """One training image: its file, its class and its patient."""

    path: Path
    label: int  # 0 NORMAL, 1 PNEUMONIA
    patient_id: str


def patient_id(path: Path) -> str:
    """Tell the patient a file belongs to.

    Args:
        path: The image file.

    Returns:
        `dicom:` and the DICOM PatientID, else the patient of a known file-name pattern, else PER_FILE
        and the file's own name.
    """
    if kind_by_name(path) in (Kind.DICOM, Kind.MAYBE_DICOM):
        patient = dicom_patient_id(path)
        if patient:
            return f"dicom:{patient}"
    name = path.name
    for rule in _PATIENT_RULES:
        match = rule.match(name)
        if match:
            return match.group(1).lower()
    return f"{PER_FILE}{path.stem.lower()}"


def dicom_patient_id(path: Path) -> str:
    """Read the PatientID of a DICOM file from its header only.

    Args:
        path: The DICOM file.

    Returns:
        The PatientID; empty when absent or unreadable.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return str(
            pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"]).get("PatientID", "")
        ).strip()
    except (OSError, InvalidDicomError, ValueError):
        return ""


def find_labelled_scans(data_dir: Path, labels_file: Path | None = None) -> list[LabelledScan]:
    """Find every labelled image of a training folder.

    Args:
        data_dir: The folder; without a labels file, its NORMAL and PNEUMONIA sub-folders (names in
            any case) hold the images.
        labels_file: A CSV with columns path,label and optionally patient; paths are relative to
            `data_dir` (or absolute). Without a patient column the patient comes from each file.

    Returns:
        The images, with their classes and patients.

    Raises:
        TrainingDataError: The folder, a class sub-folder or a listed file is missing, or the labels
            file is not one.
    """
    if not data_dir.is_dir():
        raise TrainingDataError(f"{data_dir} is not a folder")
    if labels_file is not None:
        return _scans_from_labels_file(data_dir, labels_file)
    class_dirs = {p.name.upper(): p for p in sorted(data_dir.iterdir()) if p.is_dir()}
    missing = [name for name in CLASS_NAMES if name not in class_dirs]
    if missing:
        raise TrainingDataError(f"{data_dir} has no sub-folder {' or '.join(missing)} (one folder per class)")
    return [
        LabelledScan(path, label, patient_id(path))
        for label, name in enumerate(CLASS_NAMES)
        for path in find_scans(class_dirs[name]).scans
    ]


def _scans_from_labels_file(data_dir: Path, labels_file: Path) -> list[LabelledScan]:
    from xscan.errors import LabelsError
    from xscan.model.classes import parse_label

    with open(labels_file, newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        if not {"path", "label"} <= set(reader.fieldnames or []):
            raise TrainingDataError(
                f"{labels_file} is not a labels file: it needs columns path,label (and optionally patient)"
            )
        scans = []
        for record in reader:
            path = data_dir / record["path"]
            if not path.is_file():
                raise TrainingDataError(f"{labels_file} line {reader.line_num}: no file {path}")
            try:
                label = parse_label(record["label"] or "")
            except LabelsError as error:
                raise TrainingDataError(f"{labels_file} line {reader.line_num}: {error}") from None
            patient = (record.get("patient") or "").strip()
            scans.append(LabelledScan(path, label, f"column:{patient}" if patient else patient_id(path)))
    return scans


def per_file_share(scans: list[LabelledScan]) -> float:
    """Measure the share of scans whose patient is unknown (each file its own patient).

    Their split may leak patients.

    Args:
        scans: The training images.

    Returns:
        The share; 0 for no scans.
    """
    return sum(scan.patient_id.startswith(PER_FILE) for scan in scans) / len(scans) if scans else 0.0


def _patient_fraction(patient: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{patient}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_patient(
    scans: list[LabelledScan], val_fraction: float, seed: int
) -> tuple[list[LabelledScan], list[LabelledScan]]:
    """Split into (train, validation) so that no patient has images on both sides.

    Each patient falls on the validation side when a seeded hash of its id is below
    `val_fraction`: stable, independent of file order, and never splits a patient.

    Args:
        scans: The training images.
        val_fraction: The share of patients for validation, strictly between 0 and 1.
        seed: The hash's seed.

    Returns:
        (train, validation).

    Raises:
        TrainingDataError: `val_fraction` is not strictly between 0 and 1.
    """
    if not 0.0 < val_fraction < 1.0:
        raise TrainingDataError("val_fraction must lie strictly between 0 and 1")
    train, validation = [], []
    for scan in scans:
        side = validation if _patient_fraction(scan.patient_id, seed) < val_fraction else train
        side.append(scan)
    return train, validation
