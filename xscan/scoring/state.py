"""The state file beside a results CSV, `RESULTS.state.sqlite`: what re-runs and `xscan drift` need, not people.

One SQLite database (the standard library's `sqlite3`) per results file, holding per row of the
CSV (`files`, keyed on the resolved path): the file's identity as it was scored (size,
modification and status-change times, inode), the path as the CSV writes it, the run that
wrote the row and its drift statistics; and the in-flight journal of the files being decoded
(`in_flight`, `crashes`: xscan.scoring.journal). The CSV is the truth for rows: a `files` entry
describes the CSV row with the same `path`, and one without such a row means nothing.

Write-ahead logging with `synchronous=NORMAL`: a commit is on disk for any later process as soon
as it returns, even if this one is killed (-9) the next instant; only a power cut may lose the
last commits (never corrupt the file). Only the run holding the results file's lock writes it
(xscan.scoring.lock); readers (`report`, `drift`, ...) open it read-only and see whole batches.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from xscan.errors import ResultsFileError

STATE_SUFFIX = ".state.sqlite"
SCHEMA_VERSION = "1"
# The file as it was when scored: size in bytes, modification time in nanoseconds, and the inode and status-change
# time, which tell a file replaced by another of the same size and modification time.
FINGERPRINT_FIELDS = ("size", "mtime_ns", "inode", "ctime_ns")
# Per scan, what the drift check (xscan.reporting.drift) compares with the model card's reference: the scope check's
# feature distance and its network's out-of-scope score (blank without a scope check), and the film's grey-level
# mean and spread before equalization. Kept as the text the scorer formatted, so a re-read gives the same figures.
MEASURE_FIELDS = ("feature_distance", "scope_score", "grey_mean", "grey_std")
KEY_FIELD = "resolved_path"
RUN_FIELD = "run"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    resolved_path TEXT PRIMARY KEY, path TEXT NOT NULL,
    size INTEGER, mtime_ns INTEGER, inode INTEGER, ctime_ns INTEGER, run INTEGER,
    feature_distance TEXT, scope_score TEXT, grey_mean TEXT, grey_std TEXT);
CREATE INDEX IF NOT EXISTS files_by_path ON files (path);
CREATE TABLE IF NOT EXISTS in_flight (
    resolved_path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, error TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS crashes (
    resolved_path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER,
    count INTEGER NOT NULL, error TEXT NOT NULL DEFAULT '');
"""
_FILE_FIELDS = (KEY_FIELD, "path", *FINGERPRINT_FIELDS, RUN_FIELD, *MEASURE_FIELDS)


def state_path(output: Path) -> Path:
    """Give the state file of a results file.

    Args:
        output: The results file.

    Returns:
        The state file's path beside it.
    """
    return output.with_name(output.name + STATE_SUFFIX)


@dataclass(frozen=True)
class FileState:
    """What the state file knows of the file of one CSV row; blank fields ("") are not known."""

    resolved_path: str
    path: str  # as the CSV's `path` cell: the row this describes
    fingerprint: dict[str, str] = field(default_factory=dict)  # FINGERPRINT_FIELDS that are known
    run: str = ""
    measures: dict[str, str] = field(default_factory=dict)  # MEASURE_FIELDS that are known

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> FileState:
        """From a record holding these fields by name (the columns of a 17-column results file)."""
        return cls(
            resolved_path=fields.get(KEY_FIELD, ""),
            path=fields.get("path", ""),
            fingerprint={name: fields[name] for name in FINGERPRINT_FIELDS if fields.get(name)},
            run=fields.get(RUN_FIELD, ""),
            measures={name: fields[name] for name in MEASURE_FIELDS if fields.get(name)},
        )

    def as_fields(self) -> dict[str, str]:
        """Every field by name, blank where not known: what readers add to a row's record."""
        return (
            {KEY_FIELD: self.resolved_path}
            | {name: self.fingerprint.get(name, "") for name in FINGERPRINT_FIELDS}
            | {RUN_FIELD: self.run}
            | {name: self.measures.get(name, "") for name in MEASURE_FIELDS}
        )

    def _values(self) -> tuple[object, ...]:
        integers = [_integer(self.fingerprint.get(name, "")) for name in FINGERPRINT_FIELDS]
        measures = [self.measures.get(name) or None for name in MEASURE_FIELDS]
        return (stored_path(self.resolved_path), stored_path(self.path), *integers, _integer(self.run), *measures)


class StateFile:
    """The state file of one results file, open for writing by the run that holds the results file's lock."""

    def __init__(self, output: Path, fresh: bool = False) -> None:
        """Open (or create) the state file beside a results file.

        Args:
            output: The results file.
            fresh: Replace a damaged state file (`--overwrite`).

        Raises:
            ResultsFileError: It cannot be opened or is not an xscan state file.
        """
        self.path = state_path(output)
        self._lock = threading.Lock()  # decoding threads write the journal through this connection too
        try:
            self._connection = _open(self.path)
        except sqlite3.OperationalError as error:  # cannot open, or in use: not the file's fault
            raise ResultsFileError(f"cannot write the state file {self.path}: {error}") from None
        except sqlite3.DatabaseError as error:
            if not fresh:
                raise ResultsFileError(
                    f"{self.path} (the state file of {output}) is damaged: {error}; remove it (its rows are then "
                    "scored again), or use --overwrite to start fresh"
                ) from None
            for leftover in ("", "-wal", "-shm"):  # a write-ahead log of the damaged file must not meet the new one
                self.path.with_name(self.path.name + leftover).unlink(missing_ok=True)
            self._connection = _open(self.path)
        except OSError as error:
            raise ResultsFileError(f"cannot write the state file {self.path}: {error.strerror or error}") from None

    def files(self) -> dict[str, FileState]:
        """Every `files` entry, by path as the CSV writes it."""
        return _files(self._connection)

    def replace_files(self, states: Iterable[FileState]) -> None:
        """Make the states the whole `files` table, in one transaction.

        Args:
            states: The rows of a results file just rewritten.
        """
        with self.transaction() as connection:
            connection.execute("DELETE FROM files")
            connection.executemany(_INSERT_FILE, [state._values() for state in states])

    def save_files(self, states: Iterable[FileState]) -> None:
        """Add or replace entries, in one transaction.

        Args:
            states: The rows of one batch.
        """
        with self.transaction() as connection:
            connection.executemany(_INSERT_FILE, [state._values() for state in states])

    def forget_files(self, resolved_paths: Iterable[str]) -> None:
        """Remove entries, in one transaction.

        Args:
            resolved_paths: The files about to get a new row.
        """
        with self.transaction() as connection:
            connection.executemany(
                "DELETE FROM files WHERE resolved_path = ?", [(stored_path(key),) for key in resolved_paths]
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction on the connection, committed when the block ends, rolled back if it raises."""
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def execute(self, statement: str, parameters: tuple[object, ...] = ()) -> None:
        """One statement in a transaction of its own (a journal entry)."""
        with self._lock:
            self._connection.execute(statement, parameters)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._connection.close()

    def __enter__(self) -> StateFile:
        """Return the state file itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the connection."""
        self.close()


def read_files(output: Path) -> dict[str, FileState] | None:
    """Read the `files` entries of a results file's state file, read-only.

    A reader never creates nor repairs a state file: without one, a results file is its rows alone.

    Args:
        output: The results file.

    Returns:
        The entries by path as the CSV writes it; None when there is no state file or it cannot be read.
    """
    path = state_path(output)
    if not path.is_file():
        return None
    # Read-only; on a read-only folder, where SQLite cannot make the write-ahead log's index file, as immutable.
    for mode in ("mode=ro", "immutable=1"):
        try:
            with closing(sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)) as connection:
                return _files(connection)
        except sqlite3.Error:
            continue
    return None


_INSERT_FILE = f"INSERT OR REPLACE INTO files ({', '.join(_FILE_FIELDS)}) VALUES ({', '.join('?' * len(_FILE_FIELDS))})"


def _open(path: Path) -> sqlite3.Connection:
    # Autocommit (isolation_level None): transactions are only the explicit ones, so a journal line commits at once.
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.executescript(_SCHEMA)
        version = connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if version is None:
            connection.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif version[0] != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema {version[0]}, this xscan knows {SCHEMA_VERSION}")
    except BaseException:
        connection.close()
        raise
    return connection


def _files(connection: sqlite3.Connection) -> dict[str, FileState]:
    states = {}
    for values in connection.execute(f"SELECT {', '.join(_FILE_FIELDS)} FROM files"):
        fields = {
            name: "" if value is None else loaded_path(value) if isinstance(value, bytes) else str(value)
            for name, value in zip(_FILE_FIELDS, values, strict=True)
        }
        states[fields["path"]] = FileState.from_fields(fields)
    return states


def stored_path(path: str) -> str | bytes:
    """Give a path as SQLite stores it.

    Args:
        path: The path, a file name that is not UTF-8 kept as surrogates.

    Returns:
        The path as text, or its bytes where it is not UTF-8.
    """
    try:
        path.encode()
    except UnicodeEncodeError:
        return path.encode(errors="surrogateescape")
    return path


def loaded_path(value: str | bytes) -> str:
    """A path as `stored_path` stored it."""
    return value.decode(errors="surrogateescape") if isinstance(value, bytes) else value


def _integer(text: str) -> int | None:
    return int(text) if text.lstrip("-").isdigit() else None
