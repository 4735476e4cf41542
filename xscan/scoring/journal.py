"""The in-flight journal, `RESULTS.journal` beside the results file: no file may kill the nightly run every night.

Before a file is opened for decoding, a line says it is in flight; once it is decoded (or refused
with a reason) a line says it is done. A run that dies while decoding (the OOM killer, a crash in
a native decoder) leaves the files it was decoding in flight, and the next run counts one crash
against each. A file counted once is decoded alone, so that a crash names it and no neighbour;
a file counted twice is not opened again while it is unchanged: its row says
CRASHED_TWICE. A crash is counted only against the same file: a changed size, modification time
or inode starts afresh.

An unexpected exception raised while a file is decoded (a bug, a MemoryError: not the file's
ScanError, which is a row) ends the run with exit 3: it counts as a crash too, so that a file
which ends two runs that way is not opened a third time either; its row then names the exception
(`skip_reason`). Ctrl-C and SIGTERM (not Exceptions) do not count.

One JSON object a line, appended with single `write` calls, so a line is on disk as soon as the
process dies; the file is rewritten, compacted to the crash counts, when a run starts and ends,
and removed when there is nothing to remember. Only the run holding the results file's lock
touches it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from xscan.errors import one_line
from xscan.scoring.results import KEY_COLUMN

CRASHES_TO_SKIP = 2  # in flight when this many runs died: not opened again
CRASHED_TWICE = "crashed the decoder twice; skipped"
RAISED_TWICE = "ended two runs with an unexpected error ({error}); skipped"
IDENTITY_COLUMNS = (
    "size",
    "mtime_ns",
    "inode",
)  # what makes "the same file" for a crash count (ctime moves on a chmod)


def journal_path(output: Path) -> Path:
    """The journal of the results file OUTPUT."""
    return output.with_name(output.name + ".journal")


class InFlightJournal:
    """The journal of one results file, for the run that holds its lock."""

    def __init__(self, output: Path) -> None:
        self.path = journal_path(output)
        self._lock = threading.Lock()
        self._crashes = _read_crashes(
            self.path
        )  # resolved path -> (identity, crashes, the last unexpected error or "")
        self._rewrite()
        self._descriptor: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def crashes(self, identity: Mapping[str, str]) -> int:
        """How many runs died while this file (IDENTITY: its resolved path and fingerprint) was being decoded."""
        known = self._crashes.get(identity[KEY_COLUMN])
        return known[1] if known and known[0] == _identity(identity) else 0

    def skip_reason(self, identity: Mapping[str, str]) -> str:
        """The error cell of a file not opened for its crashes: CRASHED_TWICE, or the unexpected error it last raised."""
        known = self._crashes.get(identity[KEY_COLUMN])
        return RAISED_TWICE.format(error=known[2]) if known and known[2] else CRASHED_TWICE

    @contextmanager
    def in_flight(self, identity: Mapping[str, str]) -> Iterator[None]:
        """Mark the file in flight for the duration: done when it ends, or is interrupted; an unexpected exception leaves it in flight."""
        key = identity[KEY_COLUMN]
        self._append({"start": key, "identity": _identity(identity)})
        try:
            yield
        except Exception as error:
            self._append({"raised": key, "error": f"{type(error).__name__}: {one_line(error, 120)}"})
            raise
        except BaseException:
            self._done(key)
            raise
        self._done(key)

    def _done(self, key: str) -> None:
        self._append({"done": key})
        with self._lock:
            self._crashes.pop(key, None)

    def close(self, keep: set[str]) -> None:
        """Compact the journal to the crash counts of files in KEEP (the resolved paths found this run)."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
        self._crashes = {key: entry for key, entry in self._crashes.items() if key in keep}
        self._rewrite()

    def __enter__(self) -> InFlightJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._descriptor is not None:  # stopped early: what is in the file tells the next run
            os.close(self._descriptor)
            self._descriptor = None

    def _append(self, entry: dict[str, object]) -> None:
        line = (json.dumps(entry) + "\n").encode()
        with self._lock:
            os.write(self._descriptor, line)

    def _rewrite(self) -> None:
        if not self._crashes:
            self.path.unlink(missing_ok=True)
            return
        temporary = self.path.with_name(self.path.name + ".tmp")
        lines = [
            json.dumps({"crashed": key, "identity": identity, "count": count} | ({"error": error} if error else {}))
            for key, (identity, count, error) in self._crashes.items()
        ]
        temporary.write_text("\n".join(lines) + "\n")
        os.replace(temporary, self.path)


def _identity(fingerprint: Mapping[str, str]) -> list[str]:
    return [fingerprint.get(column, "") for column in IDENTITY_COLUMNS]


def _read_crashes(path: Path) -> dict[str, tuple[list[str], int, str]]:
    """Crash counts from a journal: those recorded, plus one for each file still in flight when its run died (or raised)."""
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
