"""Resumable results files: which scans are unchanged since they were scored, and one row per file in the end.

A run appends its rows to `-o` as each batch finishes; on opening and on finishing it rewrites the
file atomically (a temporary file beside it, then `os.replace`) with the latest row of each file in
walk order. So a run killed at any moment leaves a file that the next run reads and repairs: a torn
last line is dropped, a file scored twice keeps its latest row.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from xscan.errors import ResultsFileError
from xscan.results import (
    RESULT_COLUMNS,
    DamagedResultsError,
    NotResultsError,
    ResultsTable,
    ResultsWriter,
    Row,
    read_table,
    results_columns,
)
from xscan.walk import walk_order


@dataclass
class Tally:
    """What became of each file of a run."""

    scored: int = 0
    failed: int = 0  # a row with an error: the file could not be read or decoded
    skipped: int = 0  # a row with a `skipped: ...` error: not scored by policy (a DICOM that is not a frontal radiograph)
    unchanged: int = 0  # scored by an earlier run and not changed since: not read again
    out_of_scope: int = 0  # of the scored: judged out of scope (label OUT_OF_SCOPE)


def fingerprint(path: Path) -> dict[str, str]:
    """Size and modification time of PATH as CSV fields; empty when it cannot be read (the decoder says why)."""
    try:
        status = path.stat()
    except OSError:
        return {}
    return {"size": str(status.st_size), "mtime_ns": str(status.st_mtime_ns)}


def in_walk_order(records: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """Records sorted as walk.find_scans sorts paths."""
    return sorted(records, key=lambda record: walk_order(record["path"]))


class StreamResults:
    """Rows to a fresh file or standard output, every file scored; the base of ResumableResults."""

    def __init__(self, writer: ResultsWriter) -> None:
        self._writer = writer
        self._fingerprints: dict[str, dict[str, str]] = {}
        self.tally = Tally()
        self.repaired = False  # whether a torn last line left by a killed run was dropped

    def plan(self, scans: Sequence[Path]) -> list[Path]:
        """The scans to score, fingerprinted now: before they are read, so a later change shows next run."""
        self._fingerprints = {str(scan): fingerprint(scan) for scan in scans}
        return list(scans)

    def write(self, rows: list[Row]) -> list[dict[str, str]]:
        records = [row.as_record() | self._fingerprints.get(row.path, {}) for row in rows]
        self._writer.write_records(records)
        self.tally.scored += sum(not row.error for row in rows)
        self.tally.out_of_scope += sum(bool(row.scope) for row in rows)
        self.tally.skipped += sum(row.skipped_by_policy for row in rows)
        self.tally.failed += sum(bool(row.error) and not row.skipped_by_policy for row in rows)
        return records

    def finish(self) -> None:
        self._writer.write_header()  # no rows at all (an empty folder) is still a results file
        self._writer.close()

    def __enter__(self) -> StreamResults:
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()


class ResumableResults(StreamResults):
    """A results file that a re-run completes: unchanged files are not read again, changed ones are scored again."""

    def __init__(
        self, output: Path, model_id: str, threshold: float, overwrite: bool = False, tag_columns: Sequence[str] = ()
    ) -> None:
        self.output = output
        self._threshold = f"{threshold:.6f}"
        previous = _read_previous(output, model_id, overwrite)
        columns = results_columns((*tag_columns, *previous.columns))
        self._latest = {record["path"]: record for record in previous.records}  # later rows win
        try:
            _replace(output, columns, in_walk_order(self._latest.values()))
            writer = ResultsWriter(output, columns, append=True)
        except OSError as error:
            raise ResultsFileError(f"cannot write results file {output}: {error.strerror or error}") from None
        super().__init__(writer)
        self.repaired = previous.torn

    def plan(self, scans: Sequence[Path]) -> list[Path]:
        """New and changed scans, and those that failed last time (the cause may have gone away)."""
        super().plan(scans)
        to_score = [scan for scan in scans if not self._unchanged(str(scan))]
        self.tally.unchanged = len(scans) - len(to_score)
        return to_score

    def _unchanged(self, path: str) -> bool:
        previous, current = self._latest.get(path), self._fingerprints[path]
        return bool(
            previous
            and current
            and not previous["error"]
            and previous["threshold"] == self._threshold
            and all(previous.get(column) == value for column, value in current.items())
        )

    def write(self, rows: list[Row]) -> list[dict[str, str]]:
        records = super().write(rows)
        self._latest.update((record["path"], record) for record in records)
        return records

    def finish(self) -> None:
        """Rewrite the file with one row per file, the latest, in walk order."""
        self._writer.close()
        _replace(self.output, self._writer.columns, in_walk_order(self._latest.values()))


def open_results(
    output: str, model_id: str, threshold: float, overwrite: bool = False, tag_columns: Sequence[str] = ()
) -> StreamResults:
    """Results for `-o OUTPUT`: resumable for a file, a plain stream for `-` (standard output)."""
    if output == "-":
        return StreamResults(ResultsWriter("-", results_columns(tag_columns)))
    return ResumableResults(Path(output), model_id, threshold, overwrite, tag_columns)


def _read_previous(output: Path, model_id: str, overwrite: bool) -> ResultsTable:
    if not output.exists():
        return ResultsTable(RESULT_COLUMNS, [])
    try:
        table = read_table(output)
    except DamagedResultsError as error:
        if overwrite:
            return ResultsTable(RESULT_COLUMNS, [])
        raise ResultsFileError(f"{error}; left untouched: use another -o, or --overwrite to start fresh") from None
    except NotResultsError as error:
        raise ResultsFileError(f"{error}; left untouched: use another -o") from None
    except OSError as error:
        raise ResultsFileError(f"cannot read results file {output}: {error.strerror or error}") from None
    if overwrite:
        return ResultsTable(RESULT_COLUMNS, [])
    others = sorted({record["model"] for record in table.records} - {model_id})
    if others:
        raise ResultsFileError(
            f"{output} holds rows from model {', '.join(others)}, not {model_id}; rows of different models are not mixed: "
            "use another -o, or --overwrite to start fresh"
        )
    return table


def _replace(output: Path, columns: Sequence[str], records: list[dict[str, str]]) -> None:
    """Write the whole file beside OUTPUT, then swap it in: a kill leaves the old file or the new one."""
    temporary = output.with_name(output.name + ".tmp")
    with ResultsWriter(temporary, columns) as writer:
        writer.write_records(records)
        writer.sync()
    if output.exists():
        shutil.copymode(output, temporary)
    os.replace(temporary, output)
