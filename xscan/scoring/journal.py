"""The in-flight journal, in the state file beside the results file: no file may kill the nightly run every night.

Before a file is opened for decoding, an entry says it is in flight (table `in_flight` of
xscan.scoring.state); once it is decoded (or refused with a reason) the entry goes. A run that
dies while decoding (the OOM killer, a crash in a native decoder) leaves the files it was decoding
in flight, and the next run counts one crash against each (table `crashes`). A file counted once
is decoded alone, so that a crash names it and no neighbour; a file counted twice is not opened
again while it is unchanged: its row says CRASHED_TWICE. A crash is counted only against the same
file: a changed size, modification time or inode starts afresh.

An unexpected exception raised while a file is decoded (a bug, a MemoryError: not the file's
ScanError, which is a row) ends the run with exit 3: it counts as a crash too, so that a file
which ends two runs that way is not opened a third time either; its row then names the exception
(`skip_reason`). Ctrl-C and SIGTERM (not Exceptions) do not count.

Each entry is its own SQLite commit, on disk for the next process as soon as it returns, even if
this one is killed the next instant. Crash counts survive `--overwrite` and a deleted results
file: they are about files, not rows. A journal from before the state file (`RESULTS.journal`,
JSON lines) is taken in once and removed. Only the run holding the results file's lock touches it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from xscan.errors import one_line
from xscan.scoring.results import KEY_COLUMN
from xscan.scoring.state import StateFile, loaded_path, stored_path

CRASHES_TO_SKIP = 2  # in flight when this many runs died: not opened again
CRASHED_TWICE = "crashed the decoder twice; skipped"
RAISED_TWICE = "ended two runs with an unexpected error ({error}); skipped"
# What makes "the same file" for a crash count (ctime moves on a chmod).
IDENTITY_COLUMNS = ("size", "mtime_ns", "inode")

Identity = tuple[int | None, ...]


def journal_path(output: Path) -> Path:
    """Give the journal file of a results file from before the state file held it (taken in and removed on opening).

    Args:
        output: The results file.

    Returns:
        The journal file's path beside it.
    """
    return output.with_name(output.name + ".journal")


class InFlightJournal:
    """The journal of one results file, for the run that holds its lock; opening it counts the last run's crashes."""

    def __init__(self, output: Path) -> None:
        """Open the journal in the state file and count the crashes the last run left.

        Args:
            output: The results file.

        Raises:
            ResultsFileError: The state file cannot be opened.
        """
        self._state = StateFile(output)
        try:
            self._crashes = self._count_crashes(journal_path(output))
        except BaseException:
            self._state.close()
            raise
        journal_path(output).unlink(missing_ok=True)

    def _count_crashes(self, legacy: Path) -> dict[str, tuple[Identity, int, str]]:
        """One more crash for each file left in flight; the counts by resolved path: (identity, crashes, last error)."""
        with self._state.transaction() as connection:
            for key, (identity, count, error) in _read_crashes(legacy).items():
                connection.execute(
                    "INSERT OR IGNORE INTO crashes VALUES (?, ?, ?, ?, ?, ?)",
                    (stored_path(key), *_identity(identity), count, error),
                )
            crashes = {
                loaded_path(key): (tuple(identity), count, error)
                for key, *identity, count, error in connection.execute("SELECT * FROM crashes")
            }
            for stored, *identity, raised in connection.execute("SELECT * FROM in_flight").fetchall():
                key = loaded_path(stored)
                known = crashes.get(key)
                same = known is not None and known[0] == tuple(identity)
                count = (known[1] if same else 0) + 1
                error = raised or (known[2] if same else "")
                crashes[key] = (tuple(identity), count, error)
                connection.execute(
                    "INSERT OR REPLACE INTO crashes VALUES (?, ?, ?, ?, ?, ?)", (stored, *identity, count, error)
                )
            connection.execute("DELETE FROM in_flight")
        return crashes

    def crashes(self, identity: Mapping[str, str]) -> int:
        """Count the runs that died while a file was being decoded.

        Args:
            identity: The file's resolved path and fingerprint.

        Returns:
            How many runs died; 0 for a file changed since.
        """
        known = self._crashes.get(identity[KEY_COLUMN])
        return known[1] if known and known[0] == _identity(identity) else 0

    def skip_reason(self, identity: Mapping[str, str]) -> str:
        """Give the error cell of a file not opened for its crashes.

        Args:
            identity: The file's resolved path and fingerprint.

        Returns:
            CRASHED_TWICE, or RAISED_TWICE with the unexpected error it raised.
        """
        known = self._crashes.get(identity[KEY_COLUMN])
        return RAISED_TWICE.format(error=known[2]) if known and known[2] else CRASHED_TWICE

    def recorded(self) -> dict[str, int]:
        """The crash counts as this run found them (or left them, after `close`), by resolved path."""
        return {key: count for key, (_, count, _) in self._crashes.items()}

    @contextmanager
    def in_flight(self, identity: Mapping[str, str]) -> Iterator[None]:
        """Mark a file in flight for the duration: done when it ends or is interrupted.

        An unexpected exception leaves it in flight, its error recorded.

        Args:
            identity: The file's resolved path and fingerprint.

        Yields:
            Nothing; the file is in flight while the block runs.
        """
        key = identity[KEY_COLUMN]
        self._state.execute(
            "INSERT OR REPLACE INTO in_flight VALUES (?, ?, ?, ?, '')", (stored_path(key), *_identity(identity))
        )
        try:
            yield
        except Exception as error:
            raised = f"{type(error).__name__}: {one_line(error, 120)}"
            self._state.execute("UPDATE in_flight SET error = ? WHERE resolved_path = ?", (raised, stored_path(key)))
            raise
        except BaseException:
            self._done(key)
            raise
        self._done(key)

    def _done(self, key: str) -> None:
        if key not in self._crashes:  # the common case: one statement, one commit
            self._state.execute("DELETE FROM in_flight WHERE resolved_path = ?", (stored_path(key),))
            return
        with self._state.transaction() as connection:
            connection.execute("DELETE FROM in_flight WHERE resolved_path = ?", (stored_path(key),))
            connection.execute("DELETE FROM crashes WHERE resolved_path = ?", (stored_path(key),))
            self._crashes.pop(key, None)

    def close(self, keep: set[str]) -> None:
        """Forget the crash counts of files not found this run, and close the journal.

        Args:
            keep: The resolved paths found this run.
        """
        gone = [key for key in self._crashes if key not in keep]
        with self._state.transaction() as connection:
            connection.executemany("DELETE FROM crashes WHERE resolved_path = ?", [(stored_path(key),) for key in gone])
        for key in gone:
            del self._crashes[key]
        self._state.close()

    def __enter__(self) -> InFlightJournal:
        """Return the journal itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the state file, leaving what is in flight."""
        self._state.close()  # stopped early: what is in flight tells the next run


def _identity(fingerprint: Mapping[str, str] | list[str]) -> Identity:
    texts = fingerprint if isinstance(fingerprint, list) else [fingerprint.get(c, "") for c in IDENTITY_COLUMNS]
    return tuple(int(text) if text.isdigit() else None for text in texts)


def _read_crashes(path: Path) -> dict[str, tuple[list[str], int, str]]:
    """Crash counts from a journal file of the JSON-lines era: those recorded, plus one per file left in flight."""
    try:
        lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except FileNotFoundError:
        return {}
    crashes: dict[str, tuple[list[str], int, str]] = {}
    in_flight: dict[str, list[str]] = {}
    raised: dict[str, str] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by the crash itself
        if not isinstance(entry, dict):
            continue
        if "crashed" in entry:
            crashes[entry["crashed"]] = (entry["identity"], entry["count"], entry.get("error", ""))
        elif "start" in entry:
            in_flight[entry["start"]] = entry["identity"]
            raised.pop(entry["start"], None)
        elif "raised" in entry:
            raised[entry["raised"]] = str(entry.get("error", ""))
        elif "done" in entry:
            in_flight.pop(entry["done"], None)
            crashes.pop(entry["done"], None)
    for key, identity in in_flight.items():
        known = crashes.get(key)
        same = known is not None and known[0] == identity
        crashes[key] = (identity, (known[1] if same else 0) + 1, raised.get(key) or (known[2] if same else ""))
    return crashes
