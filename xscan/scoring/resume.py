"""Resumable results files: which scans are unchanged since they were scored, and one row per file in the end.

A run appends its rows to `-o` as each batch finishes, then records their files (identity, run,
drift statistics) in the state file beside it (xscan.scoring.state), one transaction per batch:
the CSV first, so the state never describes a row the CSV lacks. On opening, the state is made to
describe exactly the CSV's rows, then the CSV is rewritten atomically (a temporary file beside it,
then `os.replace`) with the latest row of each file in walk order, in the current layout; on
finishing, it is rewritten so again if the run wrote rows. So a run killed at any moment leaves a
file that the next run reads and repairs: a torn last line is dropped, a file scored twice keeps
its latest row. Rows are matched on the resolved path (KEY_COLUMN), not on the path as typed.

A 17-column results file (the layout before the state file) is upgraded by the same opening: its
bookkeeping columns go into the state file first, then the CSV is rewritten; nothing is scored
again. A row the state file does not know (the state file deleted, say) is scored again: without
its file's identity as scored, nothing tells that the file is unchanged.
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
from xscan.scoring.state import FileState, StateFile

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
    """Tell a file's identity: its size, modification time, inode and status-change time.

    Args:
        path: The file.

    Returns:
        The four as CSV fields by name; empty when the file cannot be read.
    """
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
        """Start a run that writes through a writer (None: a subclass opens one when it knows the rows)."""
        self._writer = writer
        self._identities: dict[str, dict[str, str]] = {}  # by path as walked: fingerprint and resolved path
        self.tally = Tally()
        self.repaired = False  # whether a torn last line left by a killed run was dropped
        self.run = 1  # written in the RUN_COLUMN of each row this run scores

    def plan(self, scans: Sequence[Path], folder: Path, read_tags: TagReader | None = None) -> list[Path]:
        """Give the scans to score, fingerprinted now: before they are read, so a later change shows next run.

        Args:
            scans: The scans below the folder, as the walk found them.
            folder: The folder scored.
            read_tags: Reads DICOM tags without scoring; for resumed files only.

        Returns:
            The scans to score: all of them.
        """
        resolved = folder.resolve()
        self._identities = {
            str(scan): fingerprint(scan) | {KEY_COLUMN: str(resolved / scan.relative_to(folder))} for scan in scans
        }
        return list(scans)

    def identity(self, scan: Path) -> dict[str, str]:
        """Give a planned scan's fingerprint and its resolved path (KEY_COLUMN)."""
        return self._identities[str(scan)]

    def write(self, rows: list[Row]) -> list[dict[str, str]]:
        """Write the rows of a batch, each with its file's identity and this run's number, and count them.

        Args:
            rows: The batch's rows.

        Returns:
            The records written.
        """
        records = [row.as_record() | self._identities[row.path] | {RUN_COLUMN: str(self.run)} for row in rows]
        self._writer.write_records(records)
        self.tally.scored += sum(not row.error for row in rows)
        self.tally.out_of_scope += sum(bool(row.scope) for row in rows)
        self.tally.skipped += sum(row.skipped_by_policy for row in rows)
        self.tally.failed += sum(bool(row.error) and not row.skipped_by_policy for row in rows)
        return records

    def finish(self) -> None:
        """Write the header if no row came, and close."""
        self._writer.write_header()  # no rows at all (an empty folder) is still a results file
        self._writer.close()

    def __enter__(self) -> StreamResults:
        """Return the results themselves."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the writer."""
        if self._writer is not None:
            self._writer.close()


class ResumableResults(StreamResults):
    """A results file that a re-run completes: unchanged files are not read again, changed ones are scored again.

    Rows are matched on KEY_COLUMN, the resolved path, so the folder may be typed differently from
    one run to the next; the `path` column then takes this run's form. Every row must lie below the
    folder scored: a results file is one folder's record.
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
        """Read the earlier results and the state file beside them.

        Args:
            output: The results file.
            model_id: The model scoring now; rows of another model are not mixed in.
            threshold: The threshold now; a row with another is scored again.
            overwrite: Start fresh, whatever the file holds.
            tag_columns: The DICOM tag columns asked for now.
            rescore_skipped: Score rows skipped by the DICOM policy again (the policy is off).

        Raises:
            ResultsFileError: The file cannot be read, is damaged, or holds another model's rows.
        """
        super().__init__(None)
        self.output = output
        self._threshold = f"{threshold:.6f}"
        self._rescore_skipped = rescore_skipped
        previous = _read_previous(output, model_id, overwrite)
        self._state = StateFile(output, fresh=overwrite)
        try:
            known = self._state.files()
        except BaseException:
            self._state.close()
            raise
        self._previous = previous
        self._known = known  # the state file's entries as found, by path
        self._columns = results_columns((*tag_columns, *previous.tag_columns))
        self._new_tags = tuple(tag for tag in tag_columns if tag not in previous.columns)  # blank in every earlier row
        # Each earlier record with what is known of its file: a 17-column file's own columns, else the state file's
        # entry for its path (one under its resolved path is matched in _adopt).
        self._latest = {}
        self._by_key = {} if previous.legacy else {state.resolved_path: state for state in known.values()}
        self._overwrite = overwrite
        self._in_order = False  # whether the CSV holds one row per file in walk order: else `finish` rewrites it
        for record, state in zip(previous.records, previous.states, strict=True):
            state = state if previous.legacy else known.get(record["path"])
            merged = record | (state.as_fields() if state else {})
            self._latest[merged.get(KEY_COLUMN) or record["path"]] = merged  # later rows win
        self.repaired = previous.torn
        # One more than the file's last run; rows from before the run column count as run 0.
        runs = [record.get(RUN_COLUMN, "") for record in self._latest.values()]
        self.run = 1 + max((int(run) for run in runs if run.isdigit()), default=0)

    def plan(self, scans: Sequence[Path], folder: Path, read_tags: TagReader | None = None) -> list[Path]:
        """Give the new and changed scans, and those that failed last time (the cause may have gone away).

        Then the file is rewritten, one row per file in walk order, ready for new rows.

        Args:
            scans: The scans below the folder, as the walk found them.
            folder: The folder scored.
            read_tags: Fills tag columns new to the file for unchanged files (a header read, no scoring).

        Returns:
            The scans to score.

        Raises:
            ResultsFileError: A row lies outside the folder, or the file cannot be written.
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
        """Key each earlier row on its resolved path, check it is below FOLDER, give its path as FOLDER is typed now."""
        resolved = folder.resolve()
        keyed = {}
        for record in self._latest.values():
            key = record.get(KEY_COLUMN) or _key_of_older_row(record["path"], folder, resolved)
            state = self._by_key.get(key) if not record.get(KEY_COLUMN) else None
            keyed[key] = record | (state.as_fields() if state else {})  # its state under another path as typed
        outside = [key for key in keyed if not Path(key).is_relative_to(resolved)]
        if outside:
            raise ResultsFileError(
                f"{self.output} holds rows of files outside {folder} ({len(outside)}, e.g. {outside[0]}); "
                "a results file records one folder: use another -o, or --overwrite to start fresh"
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
        """The state file made to describe exactly the rows to come, then the CSV rewritten with them if it differs.

        State first: until the CSV is replaced, the old one still holds every row the state describes
        (a 17-column file's identities are then safe in the state file before its columns go).
        """
        records = in_walk_order(self._latest.values())
        states = [FileState.from_fields(record) for record in records]
        try:
            if len(states) != len(self._known) or any(self._known.get(state.path) != state for state in states):
                self._state.replace_files(states)
            if not self._is_written(records):
                replace_file(self.output, self._columns, records)
            self._in_order = True
            self._writer = ResultsWriter(self.output, self._columns, append=True)
        except OSError as error:
            raise ResultsFileError(f"cannot write results file {self.output}: {error.strerror or error}") from None

    def _is_written(self, records: list[dict[str, str]]) -> bool:
        """Whether the file on disk holds RECORDS already, in this layout: the common re-run with nothing to repair."""
        before = self._previous
        if self._overwrite or before.torn or before.legacy or before.columns != self._columns:
            return False
        if len(before.records) != len(records) or not self.output.is_file() or not self.output.stat().st_size:
            return False
        return all(
            all(old.get(column, "") == new.get(column, "") for column in self._columns)
            for old, new in zip(before.records, records, strict=True)
        )

    def write(self, rows: list[Row]) -> list[dict[str, str]]:
        """Append the rows of a batch to the CSV, then record their files in the state file (one transaction).

        A file scored again first loses its state entry: killed before the new entry is committed,
        its new row is then one the state does not know (scored again next run), never one that an
        entry of its earlier row would vouch for.

        Args:
            rows: The batch's rows.

        Returns:
            The records written.
        """
        replaced = [self._identities[row.path][KEY_COLUMN] for row in rows]
        replaced = [key for key in replaced if key in self._latest]
        if replaced:
            self._state.forget_files(replaced)
        records = super().write(rows)
        self._state.save_files(FileState.from_fields(record) for record in records)
        self._latest.update((record[KEY_COLUMN], record) for record in records)
        self._in_order = False
        return records

    def finish(self) -> None:
        """Rewrite the file with one row per file, the latest, in walk order (unless it is so already)."""
        if self._writer is not None:
            self._writer.close()
        if not self._in_order:
            replace_file(self.output, self._columns, in_walk_order(self._latest.values()))
        self._state.close()

    def __exit__(self, *exc: object) -> None:
        """Close the writer and the state file."""
        super().__exit__(*exc)
        self._state.close()


def open_results(
    output: str,
    model_id: str,
    threshold: float,
    overwrite: bool = False,
    tag_columns: Sequence[str] = (),
    rescore_skipped: bool = False,
) -> StreamResults:
    """Open the results of a run: resumable for a file, a plain stream for `-` (standard output).

    Args:
        output: What `-o` names.
        model_id: The model scoring.
        threshold: The threshold the rows are labelled at.
        overwrite: Start a results file fresh.
        tag_columns: The DICOM tag columns asked for.
        rescore_skipped: Score rows skipped by the DICOM policy again.

    Returns:
        The results to plan and write through.

    Raises:
        ResultsFileError: As `ResumableResults` raises it.
    """
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
        table = read_table(output, with_state=False)  # the state file is read by its writer
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
            f"{output} holds rows from model {', '.join(others)}, not {model_id}; "
            "rows of different models are not mixed: use another -o, or --overwrite to start fresh"
        )
    return table
