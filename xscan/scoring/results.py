"""The results CSV: its columns, one row per scanned file, streaming writer and the one reader, which checks every cell.

A results file is for people: the six standard COLUMNS, then `scope`, then the DICOM tags asked
for with `--dicom-tags`. What a re-run and `xscan drift` need besides (each file's identity as
scored, its resolved path, the run that wrote its row, the drift statistics) lives in the state
file beside it (xscan.scoring.state). Results files written before (the 17-column layout: the
bookkeeping LEGACY_COLUMNS between `error` and the tags, `scope` last) are read as they are, their
bookkeeping columns standing for the state file; `xscan score` upgrades one on its next run.

Cells are spreadsheet-safe: one that a spreadsheet would run as a formula (it begins with `=`, `+`,
`-`, `@`, a tab or a carriage return) is written with a leading single quote, which spreadsheets
show as text, and every reader here takes it off again (`escape_cell`, `unescape_cell`).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from xscan.errors import UsageError, printable
from xscan.model.classes import NEGATIVE, OUT_OF_SCOPE, POSITIVE
from xscan.scoring.state import FINGERPRINT_FIELDS, KEY_FIELD, MEASURE_FIELDS, RUN_FIELD, FileState, read_files

COLUMNS = ("path", "probability", "label", "threshold", "model", "error")
# Why a scan is out of scope, with the check's score; empty for every other row. Right after the six.
SCOPE_COLUMN = "scope"
# What `xscan score` writes, before any DICOM tag columns.
RESULT_COLUMNS = COLUMNS + (SCOPE_COLUMN,)
# The state file's fields by name (xscan.scoring.state): a file's identity as scored, its resolved path (what a
# re-run matches rows on), its drift statistics and the run that wrote its row. Readers add them to the records
# and rows they give (blank where not known); a 17-column results file has them as columns.
FINGERPRINT_COLUMNS = FINGERPRINT_FIELDS
KEY_COLUMN = KEY_FIELD
MEASURE_COLUMNS = MEASURE_FIELDS
RUN_COLUMN = RUN_FIELD
LEGACY_COLUMNS = FINGERPRINT_COLUMNS + (KEY_COLUMN,) + MEASURE_COLUMNS + (RUN_COLUMN,)
# A cell starting with one of these is a formula to a spreadsheet (OWASP's list: tab and carriage return too).
FORMULA_STARTS = "=+-@\t\r"
_ESCAPED = re.compile(f"'*[{re.escape(FORMULA_STARTS)}]")
# What a label cell may hold: a class, out of scope, or nothing (a file not scored).
LABELS = frozenset((NEGATIVE, POSITIVE, OUT_OF_SCOPE, ""))
# The error cell of a file not scored by policy (a DICOM that is not a frontal radiograph) starts with this.
SKIPPED_PREFIX = "skipped: "


@dataclass(frozen=True)
class Row:
    """One scanned file as a results row: its score, or why it has none."""

    path: str
    probability: float | None  # of pneumonia; None when the file could not be scored
    threshold: float
    model: str
    error: str = ""  # why the file was not scored: a ScanError's reason, or SKIPPED_PREFIX and the policy's
    # By name: DICOM tags and, as scored, the drift statistics; read back, the state file's fields too (LEGACY_COLUMNS).
    trailing_columns: dict[str, str] = field(default_factory=dict)
    scope: str = ""  # why the scan is out of scope, with the check's score; empty when it is in scope or unchecked

    def __post_init__(self) -> None:
        """Make the error and scope cells printable."""
        # The one place error and scope cells are made printable, one bounded line, whatever a damaged file put there.
        object.__setattr__(self, "error", printable(self.error))
        object.__setattr__(self, "scope", printable(self.scope))

    @property
    def skipped_by_policy(self) -> bool:
        """Whether the file was not scored by policy (a DICOM that is not a frontal radiograph)."""
        return self.error.startswith(SKIPPED_PREFIX)

    @property
    def label(self) -> str:
        """The label cell: a class by the threshold, out of scope, or empty for a file not scored."""
        if self.probability is None:
            return ""
        if self.scope:
            return OUT_OF_SCOPE
        return POSITIVE if self.probability >= self.threshold else NEGATIVE

    def as_csv(self) -> list[str]:
        """The six standard cells, in COLUMNS order, as the CSV holds them."""
        probability = "" if self.probability is None else f"{self.probability:.6f}"
        return [self.path, probability, self.label, f"{self.threshold:.6f}", self.model, self.error]

    def as_record(self) -> dict[str, str]:
        """Every column of this row by name: the six standard ones, the trailing ones, then `scope`."""
        return dict(zip(COLUMNS, self.as_csv(), strict=True)) | self.trailing_columns | {SCOPE_COLUMN: self.scope}


class ResultsWriter:
    """Writes the header, then rows as they come, flushed after each batch. `-` is stdout.

    COLUMNS are the six standard ones followed by any trailing ones; a record's other fields are not
    written. With `append`, rows go after those already in the file, whose header must be COLUMNS,
    and no header is written. The header goes out with the first rows (or `write_header`), so that
    a run that fails before it scores anything leaves nothing on standard output.
    """

    def __init__(self, destination: Path | str, columns: Sequence[str] = COLUMNS, append: bool = False) -> None:
        """Open the destination; nothing is written until the first rows or `write_header`.

        Args:
            destination: The CSV file, or `-` for standard output.
            columns: The header, in order.
            append: Add rows after those already in the file, without a header.
        """
        self._owned = str(destination) != "-"
        self._stream: IO[str] = (
            open(destination, "a" if append else "w", newline="", encoding="utf-8", errors="surrogateescape")
            if self._owned
            else _stdout()
        )
        self.columns = tuple(columns)
        self._csv = csv.writer(self._stream)
        self._header_due = not append

    def write(self, rows: list[Row]) -> None:
        """Write rows (after the header, if it is due) and flush."""
        self.write_records(row.as_record() for row in rows)

    def write_records(self, records: Iterator[dict[str, str]] | list[dict[str, str]]) -> None:
        """Write records by column name (after the header, if it is due), cells escaped, and flush.

        Args:
            records: Cells by column name; a missing column is written empty, an unknown one left out.
        """
        self.write_header()
        self._csv.writerows([escape_cell(record.get(column, "")) for column in self.columns] for record in records)
        self._stream.flush()

    def write_header(self) -> None:
        """The header, unless it is written already (or the rows are appended to a file that has one)."""
        if self._header_due:
            self._csv.writerow(self.columns)
            self._stream.flush()
            self._header_due = False

    def sync(self) -> None:
        """Flush to the disk itself, so the file survives a power cut (used before an atomic replace)."""
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def close(self) -> None:
        """Close the file, or only flush standard output, which is not this writer's to close."""
        if self._owned:
            self._stream.close()
        else:
            self._stream.flush()

    def __enter__(self) -> ResultsWriter:
        """Return the writer itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the writer."""
        self.close()


def escape_cell(text: str) -> str:
    """Escape a cell so that a spreadsheet shows it as text, not as a formula.

    A single quote goes before a formula's first character. Quotes already before such a character
    get one more, so that `unescape_cell` gives back exactly the text: `=A1` is written `'=A1`,
    `'=A1` is written `''=A1`; `'quoted'` stays as it is.

    Args:
        text: The cell's value.

    Returns:
        The cell as written.
    """
    return "'" + text if _ESCAPED.match(text) else text


def unescape_cell(text: str) -> str:
    """The cell as it was before `escape_cell`."""
    return text[1:] if text.startswith("'") and _ESCAPED.match(text) else text


def _stdout() -> IO[str]:
    # A file name that is not UTF-8 goes out as its original bytes, as it does into a file.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="surrogateescape")
    return sys.stdout


class NotResultsError(UsageError, ValueError):
    """A CSV that is not an xscan results file."""


class DamagedResultsError(NotResultsError):
    """An xscan results file damaged other than by a torn last line (which readers repair)."""


class ResultsCellError(DamagedResultsError):
    """A cell that no xscan run writes: a probability or threshold not a number in [0, 1], an unknown label.

    The message names the file, the row (as a spreadsheet numbers it: the header is row 1) and the column.
    """

    def __init__(self, source: Path, row: int, column: str, problem: str) -> None:
        """Name the cell and what is wrong with it.

        Args:
            source: The results file.
            row: The row as a spreadsheet numbers it (the header is row 1).
            column: The column's name.
            problem: What is wrong with the cell.
        """
        super().__init__(f"{source}, row {row}, column {column}: {problem}")
        self.source, self.row, self.column = source, row, column


@dataclass
class ResultsTable:
    """A results file as read: its columns, its complete records, and whether a torn last line was left out.

    Attributes:
        columns: The header.
        records: The complete records, cells by column name.
        torn: Whether a torn last line was left out.
        states: Per record, what the state file beside it knew of its file (for a 17-column file,
            its own bookkeeping columns); None where nothing is known (no state file, a row it does
            not know).
    """

    columns: tuple[str, ...]
    records: list[dict[str, str]]
    torn: bool = False
    states: list[FileState | None] = field(default_factory=list)

    @property
    def legacy(self) -> bool:
        """Whether this is a results file from before the state file (bookkeeping columns; 17 of them, `scope` last)."""
        return any(column in LEGACY_COLUMNS for column in self.columns)

    @property
    def tag_columns(self) -> tuple[str, ...]:
        """The DICOM tag columns, in file order."""
        return tuple(c for c in self.columns if c not in RESULT_COLUMNS and c not in LEGACY_COLUMNS)

    def with_state(self) -> list[dict[str, str]]:
        """Each record with its state's fields by name (LEGACY_COLUMNS), blank where not known."""
        blank = dict.fromkeys(LEGACY_COLUMNS, "")  # a legacy table has a state for every record (its own columns)
        return [
            record | (state.as_fields() if state else blank)
            for record, state in zip(self.records, self.states, strict=True)
        ]


def read_table(source: Path, with_state: bool = True) -> ResultsTable:
    """Every complete record of an xscan results CSV, checking its header and cells first.

    A run killed mid-write leaves its last record cut short: that record is left out (and `torn`
    set), never parsed as data. The cut is seen as a file that does not end with a line break,
    or as a quoted field still open at the end of the file. An empty file is an empty table.

    Args:
        source: The results CSV.
        with_state: Read the state file beside it too (xscan.scoring.state), if there is one.

    Returns:
        The table.

    Raises:
        NotResultsError: The header lacks a standard column.
        DamagedResultsError: A record other than the last is cut, or (ResultsCellError) a cell
            holds what no run writes.
    """
    with open(source, newline="", encoding="utf-8", errors="surrogateescape") as stream:
        text = stream.read()
    if not text:
        return ResultsTable(RESULT_COLUMNS, [])
    fields, torn = _parse(text, source)
    columns = tuple(fields[0])
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise NotResultsError(f"{source} is not an xscan results file: missing column(s) {', '.join(missing)}")
    if not torn and not text.endswith("\n") and len(fields) > 1:
        fields, torn = fields[:-1], True
    for number, record in enumerate(fields[1:], start=2):
        if len(record) != len(columns):
            raise DamagedResultsError(
                f"{source} is damaged: record {number} has {len(record)} fields, the header {len(columns)}"
            )
    records = [dict(zip(columns, map(unescape_cell, record), strict=True)) for record in fields[1:]]
    for number, record in enumerate(records, start=2):
        _check_cells(source, number, record)
    table = ResultsTable(columns, records, torn)
    if table.legacy:
        table.states = [FileState.from_fields(record) for record in records]
    else:
        known = (read_files(source) if with_state else None) or {}
        table.states = [known.get(record["path"]) for record in records]
    return table


def _check_cells(source: Path, number: int, record: Mapping[str, str]) -> None:
    """Raise ResultsCellError for RECORD's first cell that no run writes: the one place results cells are checked."""
    for column in ("probability", "threshold"):
        text = record[column]
        if column == "probability" and not text:
            continue  # a file not scored
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:  # nan fails too
            raise ResultsCellError(source, number, column, f"{printable(text, 40)!r} is not a number between 0 and 1")
    if record["label"] not in LABELS:
        allowed = ", ".join(sorted(LABELS - {""}))
        raise ResultsCellError(
            source, number, "label", f"{printable(record['label'], 40)!r} is not one of {allowed} or empty"
        )


def _parse(text: str, source: Path) -> tuple[list[list[str]], bool]:
    """The CSV records of TEXT, and whether a quoted field was left open at its end."""
    records: list[list[str]] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        records.extend(reader)
    except csv.Error as error:
        if "unexpected end of data" not in str(error):
            raise DamagedResultsError(f"{source} is damaged: {error} (line {reader.line_num})") from None
        return records, True
    return records, False


def results_columns(tag_columns: Sequence[str] = ()) -> tuple[str, ...]:
    """The header of a results file: RESULT_COLUMNS (the six standard ones and `scope`), then the DICOM tag columns."""
    known = set(RESULT_COLUMNS) | set(LEGACY_COLUMNS)
    return RESULT_COLUMNS + tuple(dict.fromkeys(c for c in tag_columns if c not in known))


def read_rows(source: Path) -> Iterator[Row]:
    """Read the rows of an xscan results CSV, its header and cells checked first (read_table).

    A torn last line is left out.

    Args:
        source: The results CSV.

    Yields:
        Each row; its trailing columns are its DICOM tags and, where known, the state file's fields
        (LEGACY_COLUMNS).

    Raises:
        NotResultsError: As `read_table` raises it.
    """
    table = read_table(source)
    tags = table.tag_columns  # a property that walks the header: once, not once a row
    for record, state in zip(table.records, table.states, strict=True):
        yield Row(
            path=record["path"],
            probability=float(record["probability"]) if record["probability"] else None,
            threshold=float(record["threshold"]),
            model=record["model"],
            error=record["error"],
            trailing_columns={column: record[column] for column in tags} | (state.as_fields() if state else {}),
            scope=record.get(SCOPE_COLUMN, ""),
        )


def replace_file(output: Path, columns: Sequence[str], records: Iterable[dict[str, str]]) -> None:
    """Write a whole results file beside the output, then swap it in: a kill leaves the old file or the new one.

    Args:
        output: The results file to replace (or create).
        columns: Its header.
        records: Its records, cells by column name.
    """
    temporary = output.with_name(output.name + ".tmp")
    with ResultsWriter(temporary, columns) as writer:
        writer.write_records(records)
        writer.sync()
    if output.exists():
        shutil.copymode(output, temporary)
    os.replace(temporary, output)


def drift_values(records: Iterable[Mapping[str, str]], with_probability: bool = True) -> dict[str, np.ndarray]:
    """Gather the values of each drift statistic (xscan.stats.drift) from the records that have one.

    Args:
        records: Results records with the state file's fields; a record without a scope check has none.
        with_probability: Include the model's score; off where a site calibration moved it away from
            the card's reference.

    Returns:
        Per statistic's column, its values.
    """
    columns = ("probability", *MEASURE_COLUMNS) if with_probability else MEASURE_COLUMNS
    return {column: np.array([float(record[column]) for record in records if record.get(column)]) for column in columns}
