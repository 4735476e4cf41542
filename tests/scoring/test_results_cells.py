"""Results cells are checked in the one reader: a cell no run writes is exit 2 naming the file, row and column."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xscan.cli import app
from xscan.errors import EXIT_USAGE, UsageError
from xscan.scoring.results import ResultsCellError, ResultsWriter, Row, _check_cells, read_rows, results_columns

# (column, cell) of the second data row (row 3 as a spreadsheet numbers it), and what the message says of it.
BAD_CELLS = [
    ("probability", "banana", "'banana' is not a number between 0 and 1"),
    ("probability", "nan", "'nan' is not a number between 0 and 1"),
    ("probability", "1.7", "'1.7' is not a number between 0 and 1"),
    ("probability", "-0.1", "'-0.1' is not a number between 0 and 1"),
    ("label", "MAYBE", "'MAYBE' is not one of NORMAL, OUT_OF_SCOPE, PNEUMONIA or empty"),
    ("threshold", "1.5", "'1.5' is not a number between 0 and 1"),
    ("threshold", "", "'' is not a number between 0 and 1"),
]


def _results(folder: Path, column: str, cell: str) -> Path:
    """A results file of three rows whose second has CELL in COLUMN."""
    path = folder / "results.csv"
    rows = [Row("scans/a.jpeg", 0.2, 0.5, "m"), Row("scans/b.jpeg", 0.9, 0.5, "m"), Row("scans/c.jpeg", None, 0.5, "m")]
    with ResultsWriter(path, results_columns()) as writer:
        writer.write(rows)
    with open(path, newline="") as stream:
        records = list(csv.DictReader(stream))
    records[1][column] = cell
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=results_columns())
        writer.writeheader()
        writer.writerows(records)
    return path


@pytest.mark.parametrize(("column", "cell", "problem"), BAD_CELLS)
def test_the_reader_names_the_file_row_and_column(tmp_path, column, cell, problem) -> None:
    path = _results(tmp_path, column, cell)
    with pytest.raises(ResultsCellError) as raised:
        list(read_rows(path))
    assert (raised.value.row, raised.value.column) == (3, column) and isinstance(raised.value, UsageError)
    assert str(raised.value) == f"{path}, row 3, column {column}: {problem}"
    assert raised.value.exit_code == EXIT_USAGE


def test_what_runs_write_is_read() -> None:
    cells = {"probability": ["", "0", "1", "0.734049"], "threshold": ["0", "1"], "label": ["", "OUT_OF_SCOPE"]}
    for column, values in cells.items():
        for value in values:
            record = {"probability": "0.5", "threshold": "0.5", "label": "NORMAL"} | {column: value}
            _check_cells(Path("r.csv"), 2, record)  # raises nothing


@pytest.mark.parametrize(("column", "cell", "problem"), BAD_CELLS)
@pytest.mark.parametrize("command", ["report", "sr"])
def test_report_and_sr_exit_2_naming_the_file_row_and_column(tmp_path, command, column, cell, problem) -> None:
    if command == "sr":
        pytest.importorskip("highdicom")
    path = _results(tmp_path, column, cell)
    output = ["-o", str(tmp_path / "reports")] if command == "sr" else []
    done = CliRunner().invoke(app, [command, str(path), *output])
    assert done.exit_code == EXIT_USAGE, done.output
    assert f"{path}, row 3, column {column}: {problem}" in " ".join(done.output.split())
    assert "Traceback" not in done.output and "unexpected" not in done.output


@pytest.mark.parametrize(
    "command",
    [["studies", "-o", "studies.csv"], ["calibrate", "--labels", "-o", "site.json"], ["drift"]],
    ids=lambda command: command[0],
)
def test_studies_calibrate_and_drift_exit_2_naming_the_cell_too(tmp_path, command, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = _results(tmp_path, "probability", "1.7")
    done = CliRunner().invoke(app, [command[0], str(path), *command[1:]])
    assert done.exit_code == EXIT_USAGE, done.output
    assert f"{path}, row 3, column probability: '1.7' is not a number" in " ".join(done.output.split())
    assert not (tmp_path / "studies.csv").exists() and not (tmp_path / "site.json").exists()


def test_a_resumed_file_with_a_bad_cell_is_left_untouched(tmp_path) -> None:
    from xscan.errors import ResultsFileError
    from xscan.scoring.resume import ResumableResults

    path = _results(tmp_path, "probability", "banana")
    before = path.read_bytes()
    with pytest.raises(ResultsFileError, match="row 3, column probability.*--overwrite to start fresh"):
        ResumableResults(path, "m", 0.5)
    assert path.read_bytes() == before and not (tmp_path / "results.csv.state.sqlite").exists()
