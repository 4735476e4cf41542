"""Resumable results files: which scans are unchanged since they were scored, and one row per file in the end.

A run appends its rows to `-o` as each batch finishes; on opening and on finishing it rewrites the
file atomically (a temporary file beside it, then `os.replace`) with the latest row of each file in
walk order. So a run killed at any moment leaves a file that the next run reads and repairs: a torn
last line is dropped, a file scored twice keeps its latest row. Rows are matched on the resolved
path (KEY_COLUMN), not on the path as typed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from xscan.errors import ResultsFileError
from xscan.input.walk import walk_order
from xscan.scoring.results import (
    FINGERPRINT_COLUMNS,
    KEY_COLUMN,
    RESULT_COLUMNS,
    RUN_COLUMN,
    SKIPPED_PREFIX,
    DamagedResultsError,
    NotResultsError,
    ResultsTable,
    ResultsWriter,
    Row,
    read_table,
    replace_file,
    results_columns,
)

# Tag values of one file by keyword, read from its header only: fills tag columns added to a results file.
TagReader = Callable[[Path, Sequence[str]], dict[str, str]]


@dataclass
class Tally:
    """What became of each file of a run."""

    scored: int = 0
    failed: int = 0  # a row with an error: the file could not be read or decoded
    skipped: int = (
        0  # a row with a `skipped: ...` error: not scored by policy (a DICOM that is not a frontal radiograph)
    )
    unchanged: int = 0  # scored (or skipped by policy) by an earlier run and not changed since: not read again
    out_of_scope: int = 0  # of the scored: judged out of scope (label OUT_OF_SCOPE)


def fingerprint(path: Path) -> dict[str, str]:
    """Size, modification time, inode and status-change time of PATH as CSV fields; empty when it cannot be read."""
    try:
        status = path.stat()
    except OSError:
        return {}
    return {
        "size": str(status.st_size),
        "mtime_ns": str(status.st_mtime_ns),
        "inode": str(status.st_ino),
        "ctime_ns": str(status.st_ctime_ns),
    }


def in_walk_order(records: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """Records sorted as walk.find_scans sorts paths."""
    return sorted(records, key=lambda record: walk_order(record["path"]))


class StreamResults:
    """Rows to a fresh file or standard output, every file scored; the base of ResumableResults."""

    def __init__(self, writer: ResultsWriter | None) -> None:
        self._writer = writer
        self._identities: dict[str, dict[str, str]] = {}  # by path as walked: fingerprint and resolved path
        self.tally = Tally()
        self.repaired = False  # whether a torn last line left by a killed run was dropped
        self.run = 1  # written in the RUN_COLUMN of each row this run scores

    def plan(self, scans: Sequence[Path], folder: Path, read_tags: TagReader | None = None) -> list[Path]:
        """The scans to score, fingerprinted now: before they are read, so a later change shows next run.

        SCANS lie below FOLDER, as the walk found them; READ_TAGS is for resumed files only.
        """
        resolved = folder.resolve()
        self._identities = {
            str(scan): fingerprint(scan) | {KEY_COLUMN: str(resolved / scan.relative_to(folder))} for scan in scans
        }
        return list(scans)

    def identity(self, scan: Path) -> dict[str, str]:
        """SCAN's fingerprint as planned, and its resolved path (KEY_COLUMN)."""
        return self._identities[str(scan)]

    def write(self, rows: list[Row]) -> list[dict[str, str]]:
        records = [row.as_record() | self._identities[row.path] | {RUN_COLUMN: str(self.run)} for row in rows]
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
        if self._writer is not None:
            self._writer.close()


class ResumableResults(StreamResults):
    """A results file that a re-run completes: unchanged files are not read again, changed ones are scored again.

    Rows are matched on KEY_COLUMN, the resolved path, so the folder may be typed differently from
    one run to the next; the `path` column then takes this run's form. Every row must lie below the
    folder scored: a results file is one folder's record. With RESCORE_SKIPPED (the DICOM policy is
    off), rows skipped by the policy are scored again.
    """

    def __init__(
        self,
        output: Path,
        model_id: str,
        threshold: float,
        overwrite: bool = False,
        tag_columns: Sequence[str] = (),
        rescore_skipped: bool = False,
    ) -> None:
        super().__init__(None)
        self.output = output
        self._threshold = f"{threshold:.6f}"
        self._rescore_skipped = rescore_skipped
        previous = _read_previous(output, model_id, overwrite)
        self._columns = results_columns((*tag_columns, *previous.columns))
        self._new_tags = tuple(tag for tag in tag_columns if tag not in previous.columns)  # blank in every earlier row
        self._latest = {
            record.get(KEY_COLUMN) or record["path"]: record for record in previous.records
        }  # later rows win
        self.repaired = previous.torn
        # One more than the file's last run; rows from before the run column count as run 0.
        runs = [record.get(RUN_COLUMN, "") for record in previous.records]
        self.run = 1 + max((int(run) for run in runs if run.isdigit()), default=0)

    def plan(self, scans: Sequence[Path], folder: Path, read_tags: TagReader | None = None) -> list[Path]:
        """New and changed scans, and those that failed last time (the cause may have gone away).

        Tag columns new to the file are filled for unchanged files from READ_TAGS (a header read, no
        scoring). Then the file is rewritten, one row per file in walk order, ready for new rows.
        """
        super().plan(scans, folder)
        self._adopt(folder)
        to_score = []
        for scan in scans:
            current = self._identities[str(scan)]
            previous = self._latest.get(current[KEY_COLUMN])
            if previous is None or not self._unchanged(previous, current):
                to_score.append(scan)
                continue
            tags = read_tags(scan, self._new_tags) if read_tags and self._new_tags else {}
            self._latest[current[KEY_COLUMN]] = previous | current | tags  # fills fingerprint columns older files lack
        self.tally.unchanged = len(scans) - len(to_score)
        self._start()
        return to_score

    def _adopt(self, folder: Path) -> None:
        """Key every earlier row on its resolved path, check that it lies below FOLDER, and write its path as FOLDER is typed now."""
        resolved = folder.resolve()
        keyed = {
            record.get(KEY_COLUMN) or _key_of_older_row(record["path"], folder, resolved): record
            for record in self._latest.values()
        }
        outside = [key for key in keyed if not Path(key).is_relative_to(resolved)]
        if outside:
            raise ResultsFileError(
                f"{self.output} holds rows of files outside {folder} ({len(outside)}, e.g. {outside[0]}); a results file "
                "records one folder: use another -o, or --overwrite to start fresh"
            )
        self._latest = {
            key: record | {"path": str(folder / Path(key).relative_to(resolved)), KEY_COLUMN: key}
            for key, record in keyed.items()
        }

    def _unchanged(self, previous: dict[str, str], current: dict[str, str]) -> bool:
        """Whether the row of an earlier run stands: same threshold, no error (a policy skip may stand), same file."""
        error = previous["error"]
        if error and (self._rescore_skipped or not error.startswith(SKIPPED_PREFIX)):
            return False
        if previous["threshold"] != self._threshold or "size" not in current:
            return False
        # Rows from before the inode and ctime columns are compared on size and modification time.
        compared = [column for column in FINGERPRINT_COLUMNS if previous.get(column)]
        return {"size", "mtime_ns"} <= set(compared) and all(previous[column] == current[column] for column in compared)

    def _start(self) -> None:
        try:
            replace_file(self.output, self._columns, in_walk_order(self._latest.values()))
            self._writer = ResultsWriter(self.output, self._columns, append=True)
        except OSError as error:
            raise ResultsFileError(f"cannot write results file {self.output}: {error.strerror or error}") from None

    def write(self, rows: list[Row]) -> list[dict[str, str]]:
        records = super().write(rows)
        self._latest.update((record[KEY_COLUMN], record) for record in records)
        return records

    def finish(self) -> None:
        """Rewrite the file with one row per file, the latest, in walk order."""
        if self._writer is not None:
            self._writer.close()
        replace_file(self.output, self._columns, in_walk_order(self._latest.values()))


def open_results(
    output: str,
    model_id: str,
    threshold: float,
    overwrite: bool = False,
    tag_columns: Sequence[str] = (),
    rescore_skipped: bool = False,
) -> StreamResults:
    """Results for `-o OUTPUT`: resumable for a file, a plain stream for `-` (standard output)."""
    if output == "-":
        return StreamResults(ResultsWriter("-", results_columns(tag_columns)))
    return ResumableResults(Path(output), model_id, threshold, overwrite, tag_columns, rescore_skipped)


def _key_of_older_row(path: str, folder: Path, resolved: Path) -> str:
    """The resolved path of a row from a results file older than KEY_COLUMN.

    A path below FOLDER as typed now is taken as below it; any other, as it resolves from here.
    """
    if Path(path).is_relative_to(folder):
        return str(resolved / Path(path).relative_to(folder))
    return os.path.realpath(path)


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
