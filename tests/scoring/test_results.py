import csv
import re
from pathlib import Path

import pytest

from xscan.errors import CELL_LIMIT
from xscan.scoring.results import (
    COLUMNS,
    RESULT_COLUMNS,
    NotResultsError,
    ResultsWriter,
    Row,
    escape_cell,
    read_rows,
    unescape_cell,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def test_columns_are_the_ones_the_readme_documents_in_order():
    table = README.read_text().split("The CSV has these columns, in this order", 1)[1].split("\n\n", 2)[1]
    assert tuple(re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)) == RESULT_COLUMNS == (*COLUMNS, "scope")


def test_label_follows_threshold_inclusive():
    assert Row("a", 0.5, 0.5, "m").label == "PNEUMONIA"
    assert Row("a", 0.499999, 0.5, "m").label == "NORMAL"
    assert Row("a", None, 0.5, "m", "broken").label == ""


def test_round_trip_with_awkward_names(tmp_path):
    rows = [Row('we,ird "name"\nx.png', 0.123456789, 0.5, "m"), Row("ünï cødé.jpg", None, 0.5, "m", "empty file")]
    with ResultsWriter(tmp_path / "r.csv") as writer:
        writer.write(rows)
    back = list(read_rows(tmp_path / "r.csv"))
    assert [r.path for r in back] == [r.path for r in rows]
    assert back[0].probability == pytest.approx(0.123457)
    assert back[1].probability is None and back[1].error == "empty file"
    with open(tmp_path / "r.csv", newline="") as stream:
        assert next(csv.reader(stream)) == list(COLUMNS)  # a writer given no columns writes the six standard ones


def test_foreign_csv_is_refused_naming_missing_columns(tmp_path):
    (tmp_path / "other.csv").write_text("path,score\na,1\n")
    with pytest.raises(NotResultsError, match="label"):
        list(read_rows(tmp_path / "other.csv"))


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ('=HYPERLINK("x")', """'=HYPERLINK("x")"""),
        ("+cmd", "'+cmd"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\ttab", "'\ttab"),
        ("\rcr", "'\rcr"),
        ("'=quoted", "''=quoted"),
        ("''+twice", "'''+twice"),
        ("'plain quote", "'plain quote"),
        ("a=b", "a=b"),
        ("", ""),
        ("0.5", "0.5"),
    ],
)
def test_cells_are_spreadsheet_safe_and_read_back_exactly(text, written):
    assert escape_cell(text) == written
    assert unescape_cell(written) == text


def test_error_and_scope_cells_are_one_printable_bounded_line_however_damaged_the_file() -> None:
    damaged_uid = (
        "skipped: no image (['1.2.840.10008.5.1.4.1.1.1.1\x00\x08\x00\x18\x00UI\x9d\udc80" + "\x1b[31m" * 400 + "'])"
    )
    row = Row("a.dcm", None, 0.5, "m", damaged_uid, scope="line one\nline two\r\x07")
    assert row.error.startswith(
        "skipped: no image (['1.2.840.10008.5.1.4.1.1.1.1\\x00\\x08\\x00\\x18\\x00UI\\x9d\\udc80\\x1b[31m"
    )
    assert len(row.error) == CELL_LIMIT and row.error.endswith("...")
    assert row.scope == "line one line two \\x07"
    assert all(cell.isprintable() for cell in row.as_csv()) and row.as_record()["scope"].isprintable()
