"""Training's three patient-disjoint parts, and where a patient comes from on a site's own data."""

from __future__ import annotations

import numpy as np
from support.data import TRAIN, needs_data
from support.dicom import write_dicom

from xscan.training.config import TrainConfig
from xscan.training.dataset import find_labelled_scans, per_file_share
from xscan.training.parts import split_for_training


@needs_data
def test_no_patient_both_chooses_and_reports():
    train, select, report = split_for_training(find_labelled_scans(TRAIN), TrainConfig())
    patients = [{scan.patient_id for scan in part} for part in (train, select, report)]
    assert not patients[0] & patients[1] and not patients[0] & patients[2] and not patients[1] & patients[2]
    assert len(train) + len(select) + len(report) == 5216
    # Each part is big enough to carry both classes, and the two held-out parts are about equal.
    assert 0.8 < len(select) / len(report) < 1.25
    assert {scan.label for scan in report} == {0, 1}


def test_patient_from_dicom_patient_id(tmp_path):
    pixels = np.tile(np.arange(64, dtype=np.uint8), (64, 1))
    for label, name, patient in (("NORMAL", "a.dcm", "P1"), ("NORMAL", "b.dcm", "P1"), ("PNEUMONIA", "c.dcm", "P2")):
        (tmp_path / label).mkdir(exist_ok=True)
        write_dicom(tmp_path / label / name, pixels, PatientID=patient)
    patients = {scan.path.name: scan.patient_id for scan in find_labelled_scans(tmp_path)}
    assert patients == {"a.dcm": "dicom:P1", "b.dcm": "dicom:P1", "c.dcm": "dicom:P2"}
    assert per_file_share(find_labelled_scans(tmp_path)) == 0


def test_patient_from_a_labels_file_column_else_per_file(tmp_path):
    for name in ("x1.png", "x2.png", "y.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "truth.csv").write_text("path,label,patient\nx1.png,NORMAL,alice\nx2.png,PNEUMONIA,alice\ny.png,1,\n")
    scans = {scan.path.name: scan for scan in find_labelled_scans(tmp_path, tmp_path / "truth.csv")}
    assert scans["x1.png"].patient_id == scans["x2.png"].patient_id == "column:alice"
    assert (scans["x1.png"].label, scans["x2.png"].label, scans["y.png"].label) == (0, 1, 1)
    assert scans["y.png"].patient_id == "file:y"  # no patient information: its own patient, and the share is reported
    assert per_file_share(list(scans.values())) == 1 / 3
