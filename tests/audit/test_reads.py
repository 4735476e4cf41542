"""Reads files: one read per key (the later of two that disagree), duplicates and unmatched said, empty refused."""

import re
from datetime import datetime
from pathlib import Path

import pytest

from xscan.audit.reads import ReadsError, match_reads, parse_read_at, read_reads
from xscan.scoring.results import ResultsWriter, Row, results_columns
from xscan.scoring.state import FileState, StateFile


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def results(tmp_path: Path) -> Path:
    rows = [
        Row("scans/a.png", 0.9, 0.5, "m"),
        Row("scans/b.png", 0.1, 0.5, "m"),
        Row("scans/broken.png", None, 0.5, "m", "not an image"),
    ]
    with ResultsWriter(tmp_path / "results.csv", results_columns()) as writer:
        writer.write(rows)
    with StateFile(tmp_path / "results.csv") as state:  # the runs live in the state file beside the CSV
        state.replace_files(
            FileState.from_fields({"path": row.path, "resolved_path": row.path, "run": run})
            for row, run in zip(rows, ("1", "1", "2"), strict=True)
        )
    return tmp_path / "results.csv"


def test_a_later_read_with_the_other_label_replaces_the_earlier_and_says_so(tmp_path):
    reads = read_reads(
        write(
            tmp_path / "reads.csv",
            "path,label,read_at\n"
            "scans/a.png,PNEUMONIA,2026-03-02T10:00\n"
            "scans/a.png,normal,2026-03-01\n"  # earlier in time, though later in the file
            "scans/b.png,NORMAL,2026-03-01\n",
        )
    )
    assert [(read.key, read.label) for read in reads.reads] == [("scans/b.png", 0), ("scans/a.png", 1)]
    assert reads.contradicted == [
        "scans/a.png: read NORMAL at 2026-03-01T00:00:00 (line 3), then PNEUMONIA at 2026-03-02T10:00:00 (line 2): "
        "the later read counts"
    ]
    assert reads.duplicated == []


def test_duplicated_reads_are_counted_once_and_said(tmp_path):
    reads = read_reads(
        write(
            tmp_path / "reads.csv",
            "path,label,read_at\nscans/a.png,1,2026-03-01\nscans/a.png,PNEUMONIA,2026-03-04\nscans/b.png,0,2026-03-01\n",
        )
    )
    assert len(reads.reads) == 2
    assert reads.duplicated == ["scans/a.png: read PNEUMONIA 2 times (lines 2, 3): counted once, at the first"]
    assert next(read for read in reads.reads if read.key == "scans/a.png").read_at == datetime(2026, 3, 1)


def test_unmatched_and_unscored_reads_are_listed_not_dropped(tmp_path, results, monkeypatch):
    monkeypatch.chdir(tmp_path)  # results' relative paths are taken from the current folder, as report's labels
    reads = read_reads(
        write(
            tmp_path / "reads.csv",
            "path,label,read_at\nscans/a.png,1,2026-03-01\nscans/./b.png,0,2026-03-01\n"
            "scans/elsewhere.png,0,2026-03-02\nscans/broken.png,1,2026-03-02\n",
        )
    )
    matched = match_reads(reads, results)
    assert [(j.read.key, j.flagged, j.run) for j in matched.judged] == [
        ("scans/a.png", True, "1"),
        ("scans/./b.png", False, "1"),
    ]
    assert [read.key for read in matched.unmatched] == ["scans/elsewhere.png"]
    assert [read.key for read in matched.not_scored] == ["scans/broken.png"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty: no reads to audit"),
        ("path,label,read_at\n", "has a header but no reads: nothing to audit"),
        ("path,label\nx,1\n", "missing column(s) read_at"),
        ("file,label,read_at\nx,1,2026-01-01\n", "missing column(s) path or StudyInstanceUID or AccessionNumber"),
        ("path,label,read_at\nx,maybe,2026-01-01\n", "line 2: label 'maybe' is not one of"),
        ("path,label,read_at\nx,1,yesterday\n", "line 2: read_at 'yesterday' is not an ISO date"),
        ("path,label,read_at\n,1,2026-01-01\n", "line 2: the path is empty"),
    ],
)
def test_a_reads_file_that_cannot_be_audited_says_why(tmp_path, text, message):
    with pytest.raises(ReadsError, match=re.escape(message)):
        read_reads(write(tmp_path / "reads.csv", text))


def test_times_with_a_zone_are_taken_to_utc():
    assert parse_read_at("2026-03-01T01:30+02:00", "here") == datetime(2026, 2, 28, 23, 30)
    assert parse_read_at(" 2026-03-01 ", "here") == datetime(2026, 3, 1)
