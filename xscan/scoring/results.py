"""The results CSV: its columns, one row per scanned file, streaming writer and reader.

A results file starts with the six standard COLUMNS; the columns after them are trailing columns,
by name: `size`, `mtime_ns`, `inode` and `ctime_ns` record each file as it was scored, so that a
re-run can skip it, `resolved_path` is the file's path with the scored folder's symbolic links
resolved (what a re-run matches rows on), then MEASURE_COLUMNS (what the drift check compares
with the model card's reference) and `run` (which run into the file wrote the row); DICOM tags asked
for with `--dicom-tags` follow, and `scope` is always last.
Readers that know only the six standard columns ignore the rest.

Cells are spreadsheet-safe: one that a spreadsheet would run as a formula (it begins with `=`, `+`,
`-`, `@`, a tab or a carriage return) is written with a leading single quote, which spreadsheets
show as text, and every reader here takes it off again (`escape_cell`, `unescape_cell`).
"""

from __future__ import annotations

import csv
import io
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

COLUMNS = ("path", "probability", "label", "threshold", "model", "error")
# The file as it was when scored: size in bytes, modification time in nanoseconds, and the inode and
# status-change time, which tell a file replaced by another of the same size and modification time.
FINGERPRINT_COLUMNS = ("size", "mtime_ns", "inode", "ctime_ns")
# The file's path below the scored folder, that folder's symbolic links resolved: one row per file
# whichever way the folder is typed (`./export`, `/data/export`, a link to it).
KEY_COLUMN = "resolved_path"
# Per scan, what the drift check (xscan.reporting.drift) compares with the model card's reference: the scope check's
# feature distance and its network's out-of-scope score (blank without a scope check), and the film's grey-level
# mean and spread before equalization. Blank for a file not scored, and in rows written before these columns existed.
MEASURE_COLUMNS = ("feature_distance", "scope_score", "grey_mean", "grey_std")
# Which run of `xscan score` into the file wrote the row: 1, then one more for each later run, so that the
# rows of the last run are those with the highest number. Blank in rows written before this column existed.
RUN_COLUMN = "run"
# What `xscan score` writes, before any DICOM tag columns.
RESULT_COLUMNS = COLUMNS + FINGERPRINT_COLUMNS + (KEY_COLUMN,) + MEASURE_COLUMNS + (RUN_COLUMN,)
# A cell starting with one of these is a formula to a spreadsheet (OWASP's list: tab and carriage return too).
FORMULA_STARTS = "=+-@\t\r"
_ESCAPED = re.compile(f"'*[{re.escape(FORMULA_STARTS)}]")
# Why a scan is out of scope, with the check's score; empty for every other row. Always the last column.
SCOPE_COLUMN = "scope"
# The error cell of a file not scored by policy (a DICOM that is not a frontal radiograph) starts with this.
SKIPPED_PREFIX = "skipped: "


@dataclass(frozen=True)
class Row:
    path: str
    probability: float | None  # of pneumonia; None when the file could not be scored
    threshold: float
    model: str
    error: str = ""  # why the file was not scored: a ScanError's reason, or SKIPPED_PREFIX and the policy's
    trailing_columns: dict[str, str] = field(
        default_factory=dict
    )  # by name: DICOM tags; size and mtime_ns when read back
    scope: str = ""  # why the scan is out of scope, with the check's score; empty when it is in scope or unchecked

    def __post_init__(self) -> None:
        # The one place error and scope cells are made printable, one line and bounded, whatever a damaged file put in them.
        object.__setattr__(self, "error", printable(self.error))
        object.__setattr__(self, "scope", printable(self.scope))

    @property
    def skipped_by_policy(self) -> bool:
        return self.error.startswith(SKIPPED_PREFIX)

    @property
    def label(self) -> str:
        if self.probability is None:
            return ""
        if self.scope:
            return OUT_OF_SCOPE
        return POSITIVE if self.probability >= self.threshold else NEGATIVE

    def as_csv(self) -> list[str]:
        probability = "" if self.probability is None else f"{self.probability:.6f}"
        return [self.path, probability, self.label, f"{self.threshold:.6f}", self.model, self.error]

    def as_record(self) -> dict[str, str]:
        """Every column of this row by name: the six standard ones, then the trailing ones."""
        return dict(zip(COLUMNS, self.as_csv(), strict=True)) | self.trailing_columns | {SCOPE_COLUMN: self.scope}


class ResultsWriter:
    """Writes the header, then rows as they come, flushed after each batch. `-` is stdout.

    COLUMNS are the six standard ones followed by any trailing ones; with `append`, rows go after those
    already in the file, whose header must be COLUMNS, and no header is written. The header goes
    out with the first rows (or `write_header`), so that a run that fails before it scores anything
    leaves nothing on standard output.
    """

    def __init__(self, destination: Path | str, columns: Sequence[str] = COLUMNS, append: bool = False) -> None:
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
        self.write_records(row.as_record() for row in rows)

    def write_records(self, records: Iterator[dict[str, str]] | list[dict[str, str]]) -> None:
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
        if self._owned:
            self._stream.close()
        else:
            self._stream.flush()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def escape_cell(text: str) -> str:
    """TEXT as a spreadsheet shows it as text, not as a formula: a single quote before a formula's first character.

    Quotes already before such a character get one more, so that `unescape_cell` gives back
    exactly TEXT: `=A1` is written `'=A1`, `'=A1` is written `''=A1`; `'quoted'` stays as it is.
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


@dataclass
class ResultsTable:
    """A results file as read: its columns, its complete records, and whether a torn last line was left out."""

    columns: tuple[str, ...]
    records: list[dict[str, str]]
    torn: bool = False


def read_table(source: Path) -> ResultsTable:
    """Every complete record of an xscan results CSV, checking its header first.

    A run killed mid-write leaves its last record cut short: that record is left out (and `torn`
    set), never parsed as data. The cut is seen as a file that does not end with a line break,
    or as a quoted field still open at the end of the file. An empty file is an empty table.
    """
    with open(source, newline="", encoding="utf-8", errors="surrogateescape") as stream:
        text = stream.read()
    if not text:
        return ResultsTable(COLUMNS, [])
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
    return ResultsTable(columns, records, torn)


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
    """The header of a results file: RESULT_COLUMNS, the DICOM tag columns asked for, then `scope`."""
    tags = tuple(dict.fromkeys(c for c in tag_columns if c not in RESULT_COLUMNS and c != SCOPE_COLUMN))
    return RESULT_COLUMNS + tags + (SCOPE_COLUMN,)


def read_rows(source: Path) -> Iterator[Row]:
    """The rows of an xscan results CSV, checking its header first; a torn last line is left out."""
    table = read_table(source)
    for record in table.records:
        yield Row(
            path=record["path"],
            probability=float(record["probability"]) if record["probability"] else None,
            threshold=float(record["threshold"]),
            model=record["model"],
            error=record["error"],
            trailing_columns={
                column: record[column] for column in table.columns[len(COLUMNS) :] if column != SCOPE_COLUMN
            },
            scope=record.get(SCOPE_COLUMN, ""),
        )


def replace_file(output: Path, columns: Sequence[str], records: Iterable[dict[str, str]]) -> None:
    """Write the whole file beside OUTPUT, then swap it in: a kill leaves the old file or the new one."""
    temporary = output.with_name(output.name + ".tmp")
    with ResultsWriter(temporary, columns) as writer:
        writer.write_records(records)
        writer.sync()
    if output.exists():
        shutil.copymode(output, temporary)
    os.replace(temporary, output)


def drift_values(records: Iterable[Mapping[str, str]], with_probability: bool = True) -> dict[str, np.ndarray]:
    """Per drift statistic (xscan.stats.drift), the values of scored RECORDS that have one (blank without the scope check).

    WITH_PROBABILITY off leaves the model's score out: a site calibration moved it away from the card's reference.
    """
    columns = ("probability", *MEASURE_COLUMNS) if with_probability else MEASURE_COLUMNS
    return {column: np.array([float(record[column]) for record in records if record.get(column)]) for column in columns}
