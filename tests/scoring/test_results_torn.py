"""The results CSV under stress: awkward file names round-trip, a torn last line is never parsed as data."""

import csv

import pytest

from xscan.scoring.results import (
    COLUMNS,
    DamagedResultsError,
    NotResultsError,
    ResultsWriter,
    Row,
    read_rows,
    read_table,
    results_columns,
)

TAGS = ("PatientID", "AccessionNumber", "StudyDate", "SeriesNumber")

AWKWARD = [
    "scans/with, comma.png",
    'scans/"quoted".png',
    "scans/new\nline.png",
    "scans/carriage\r\nreturn.png",
    "scans/  spaces  .png",
    "scans/Ünïcødé 肺.png",
    "scans/" + b"latin1-\xe9.png".decode("utf-8", "surrogateescape"),  # a file name that is not UTF-8
]


def _rows():
    return [
        Row(
            path,
            0.25 + i / 100,
            0.5,
            "m",
            trailing_columns={
                "PatientID": str(1000 + i),
                "AccessionNumber": str(10**18 + i),
                "StudyDate": str(77 + i),
                "SeriesNumber": str(10**18 + 2 * i),
            },
        )
        for i, path in enumerate(AWKWARD)
    ]


def _write(path, rows):
    with ResultsWriter(path, results_columns(TAGS)) as writer:
        writer.write(rows)


def test_awkward_names_round_trip_exactly(tmp_path):
    _write(tmp_path / "r.csv", _rows())
    back = list(read_rows(tmp_path / "r.csv"))
    assert [row.path for row in back] == AWKWARD
    assert [row.trailing_columns for row in back] == [row.trailing_columns for row in _rows()]
    assert b"latin1-\xe9.png" in (tmp_path / "r.csv").read_bytes()  # the original bytes, not a replacement


def test_report_readers_see_the_six_columns_scope_and_the_tags(tmp_path):
    _write(tmp_path / "r.csv", _rows()[:1])
    with open(tmp_path / "r.csv", newline="") as stream:
        assert next(csv.reader(stream)) == [*COLUMNS, "scope", *TAGS]
    (row,) = read_rows(tmp_path / "r.csv")
    assert row.probability == 0.25 and row.label == "NORMAL"
    assert row.trailing_columns == {
        "PatientID": "1000",
        "AccessionNumber": str(10**18),
        "StudyDate": "77",
        "SeriesNumber": str(10**18),
    }


@pytest.mark.parametrize("last", range(len(AWKWARD)))
def test_a_cut_anywhere_in_the_last_record_drops_exactly_that_record(tmp_path, last):
    rows = _rows()[: last + 1]
    _write(tmp_path / "full.csv", rows)
    _write(tmp_path / "before.csv", rows[:-1])
    full, before = (tmp_path / "full.csv").read_bytes(), (tmp_path / "before.csv").read_bytes()
    assert full.startswith(before)
    for cut in range(len(before), len(full) + 1):
        (tmp_path / "cut.csv").write_bytes(full[:cut])
        table = read_table(tmp_path / "cut.csv")
        complete = cut == len(full)
        assert [r["path"] for r in table.records] == [r.path for r in (rows if complete else rows[:-1])], cut
        assert table.torn == (not complete and cut > len(before)), cut


def test_damage_before_the_last_line_is_not_repaired_silently(tmp_path):
    _write(tmp_path / "r.csv", _rows()[:3])
    lines = (tmp_path / "r.csv").read_bytes().split(b"\r\n")
    lines[1] = lines[1][:10]
    (tmp_path / "r.csv").write_bytes(b"\r\n".join(lines))
    with pytest.raises(DamagedResultsError, match="is damaged"):
        read_table(tmp_path / "r.csv")


def test_a_foreign_csv_is_not_results(tmp_path):
    (tmp_path / "patients.csv").write_text("patient_id,name\n1,Ada\n")
    with pytest.raises(NotResultsError, match="not an xscan results file: missing column"):
        read_table(tmp_path / "patients.csv")


def test_an_empty_file_is_an_empty_table(tmp_path):
    (tmp_path / "r.csv").write_bytes(b"")
    assert read_table(tmp_path / "r.csv").records == []
