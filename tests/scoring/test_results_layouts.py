"""Both results layouts through every command that reads results: the CSV and its state file, and the 17-column file.

`drift` on both layouts is tested in tests/reporting/test_drift.py; here `report`, `studies`, `sr` and
`calibrate` must give the same output from a results file and from the same rows in the layout before
the state file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from support.dicom import write_dicom
from support.site import site_sample
from support.stand_in import StandIn
from typer.testing import CliRunner

from xscan.cli import app
from xscan.scoring.options import DicomOptions, ScoreOptions
from xscan.scoring.results import COLUMNS, LEGACY_COLUMNS, ResultsWriter, read_table, results_columns
from xscan.scoring.run import score_folder

TAGS = ("PatientID",)
# The header `xscan score --dicom-tags PatientID` wrote before the state file: bookkeeping, tags, then `scope`.
LAYOUT_17 = (*COLUMNS, *LEGACY_COLUMNS, *TAGS, "scope")


def as_17_columns(results: Path, old: Path) -> Path:
    """The rows of RESULTS (and its state file) written to OLD in the 17-column layout."""
    with open(old, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=LAYOUT_17)
        writer.writeheader()
        writer.writerows(read_table(results).with_state())
    return old


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> tuple[Path, Path]:
    """Four DICOM films of two studies, scored into a results file, and the same rows in the 17-column layout."""
    root = tmp_path_factory.mktemp("layouts")
    folder = root / "export"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for number in range(4):
        study = number // 2
        write_dicom(
            folder / f"film{number}.dcm",
            rng.integers(0, 256, (64, 64), dtype=np.uint8),
            StudyInstanceUID=f"1.2.826.0.1.3680043.10.1.{study}",
            SeriesInstanceUID=f"1.2.826.0.1.3680043.10.2.{study}",
            SOPInstanceUID=f"1.2.826.0.1.3680043.10.3.{number}",
            PatientID=f"PID-{study}",
        )
    new = root / "new.csv"
    options = ScoreOptions(dicom=DicomOptions(tags=TAGS), workers=1)
    assert score_folder(folder, new, options, scorer=StandIn()).scored == 4
    assert read_table(new).columns == results_columns(TAGS)
    old = as_17_columns(new, root / "old.csv")
    assert read_table(old).legacy and read_table(old).with_state() == read_table(new).with_state()
    return new, old


def _invoke(*args: object) -> str:
    done = CliRunner().invoke(app, [str(arg) for arg in args])
    assert done.exit_code == 0, done.output
    return done.stdout


def test_report_reads_both_layouts_alike(layouts) -> None:
    new, old = (json.loads(_invoke("report", results, "--json", "--bootstrap", "0")) for results in layouts)
    assert new["rows"] == 4 and new == old | {"source": new["source"]}


def test_studies_reads_both_layouts_alike(layouts, tmp_path) -> None:
    written = [tmp_path / "new-studies.csv", tmp_path / "old-studies.csv"]
    for results, output in zip(layouts, written, strict=True):
        _invoke("studies", results, "-o", output)
    assert written[0].read_bytes() == written[1].read_bytes() and len(written[0].read_text().splitlines()) == 3


def test_sr_reads_both_layouts_alike(layouts, tmp_path) -> None:
    pytest.importorskip("highdicom")
    folders = [tmp_path / "new-reports", tmp_path / "old-reports"]
    for results, output in zip(layouts, folders, strict=True):
        _invoke("sr", results, "-o", output)
    new, old = ({path.name: _content(path) for path in folder.glob("*.dcm")} for folder in folders)
    assert len(new) == 2 and new == old  # the same rows make the same reports (UIDs derived from them)


def _content(report: Path) -> tuple[str, str]:
    """An SR's instance UID (derived from the results) and its content tree, without the time it was written."""
    dataset = pydicom.dcmread(report)
    return dataset.SOPInstanceUID, str(dataset.ContentSequence)


def test_calibrate_reads_both_layouts_alike(tmp_path) -> None:
    sites = []
    for name, columns in (("new", results_columns()), ("old", (*COLUMNS, *LEGACY_COLUMNS, "scope"))):
        with ResultsWriter(tmp_path / f"{name}.csv", columns) as writer:
            writer.write(site_sample(30))
        _invoke("calibrate", tmp_path / f"{name}.csv", "--labels", "-o", tmp_path / f"{name}.json")
        sites.append(json.loads((tmp_path / f"{name}.json").read_text()))
    assert sites[0] == sites[1] and sites[0]["counts"]["used"] == 60
