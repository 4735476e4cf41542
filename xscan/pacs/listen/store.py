"""The listener's state, one SQLite file in its folder: instances received, studies, the sending queue and its log.

Reception, scoring and sending run on different threads and must agree after a kill -9: every
change is one transaction (SQLite's journal, synchronous=FULL), so a restart finds each instance
received or not, scored or not, each report queued, sent or waiting for its next try.

- `instances`: one row per SOP Instance UID stored, its study, file, arrival time and, once a
  scoring pass has written its row into the results, when.
- `studies`: one row per study; `open` while it has instances its report does not cover yet
  (awaiting the quiet period), with the last arrival and the verdict of its last report.
- `reports`: each report file already looked at (its stat fingerprint), so that a file is read
  only when the report writer changed it.
- `outbox`: one row per report file and destination: attempts, next try, last error, and when
  the destination acknowledged it (the sent log). Rows are never deleted.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from xscan.errors import RunError

STORE_FILE = "listen.sqlite"
FORMAT = "xscan listen store 1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, sop_class_uid TEXT NOT NULL, path TEXT NOT NULL,
    calling_ae_title TEXT NOT NULL, received_at REAL NOT NULL, scored_at REAL);
CREATE INDEX IF NOT EXISTS instances_by_study ON instances (study_uid);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY, last_arrival REAL NOT NULL, open INTEGER NOT NULL, reported_at REAL,
    verdict TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS reports (path TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, study_uid TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    destination TEXT NOT NULL, sop_instance_uid TEXT NOT NULL, sop_class_uid TEXT NOT NULL, study_uid TEXT NOT NULL,
    file TEXT NOT NULL, queued_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '', sent_at REAL, PRIMARY KEY (destination, sop_instance_uid));
"""


class StoreError(RunError):
    """The listener's folder or state file cannot be used: not writable, damaged, not an xscan listener's (exit 3)."""


@dataclass(frozen=True)
class Instance:
    """An instance as reception records it, once its file is durable in the store's folder."""

    sop_instance_uid: str
    study_uid: str
    sop_class_uid: str
    path: Path
    calling_ae_title: str


@dataclass(frozen=True)
class Queued:
    """A report file waiting for one destination."""

    destination: str
    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    file: Path
    attempts: int


@dataclass(frozen=True)
class ReportFile:
    """A report file the report writer made for a study (an SR, or whatever else it writes)."""

    path: Path
    fingerprint: str
    study_uid: str
    sop_instance_uid: str
    sop_class_uid: str


@dataclass(frozen=True)
class Undelivered:
    """What waits to be resent to one destination, and the last reason it failed."""

    destination: str
    files: int
    last_error: str
    next_try: float


@dataclass(frozen=True)
class Counts:
    """What `xscan listen --status` prints: where each instance and report is."""

    received: int  # instances stored
    awaiting: int  # instances of studies awaiting their quiet period (or their report)
    awaiting_studies: int
    scored: int  # instances with a row in the results
    studies_reported: int
    sent: int  # report files a destination acknowledged
    to_send: int  # report files queued, not tried yet
    to_resend: int  # report files whose last try failed
    undelivered: tuple[Undelivered, ...]


class Store:
    """The state file FOLDER/listen.sqlite, shared by the listener's threads (one connection, one lock)."""

    def __init__(self, folder: Path, create: bool = True) -> None:
        """Open (or create) the state file of a folder.

        Args:
            folder: The --store folder.
            create: Whether a folder without a state file may be started; False for --status.

        Raises:
            StoreError: The state file is missing (create=False), cannot be opened, or is not a listener's (exit 3).
        """
        self.folder = folder
        self.path = folder / STORE_FILE
        self._lock = threading.Lock()
        if not create and not self.path.is_file():
            raise StoreError(
                f"{folder} holds no listener state ({STORE_FILE}): has xscan listen run with this --store?"
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._check_format()
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"cannot use {self.path} as the listener's state: {error}") from None

    def _check_format(self) -> None:
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise StoreError(f"{self.path} is not an xscan listener's state file; left untouched")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut, not only a kill
        self._db.executescript(SCHEMA)  # CREATE ... IF NOT EXISTS: a no-op on a store of this format
        with self._transaction() as db:
            found = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if found is None:
                db.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
            elif found[0] != FORMAT:
                raise StoreError(f"{self.path} is a state file of another format ({found[0]}); left untouched")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    # --- reception

    def add_instance(self, instance: Instance, received_at: float) -> None:
        """Record an instance received; a SOP Instance UID received again is scored again.

        Args:
            instance: The instance, durable on disk already.
            received_at: When it arrived (seconds since the epoch).
        """
        with self._transaction() as db:
            db.execute(
                "INSERT INTO instances VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (sop_instance_uid) DO UPDATE SET "
                "study_uid = excluded.study_uid, sop_class_uid = excluded.sop_class_uid, path = excluded.path, "
                "calling_ae_title = excluded.calling_ae_title, received_at = excluded.received_at, scored_at = NULL",
                (
                    instance.sop_instance_uid,
                    instance.study_uid,
                    instance.sop_class_uid,
                    str(instance.path),
                    instance.calling_ae_title,
                    received_at,
                ),
            )
            db.execute(
                "INSERT INTO studies (study_uid, last_arrival, open) VALUES (?, ?, 1) ON CONFLICT (study_uid) "
                "DO UPDATE SET last_arrival = max(last_arrival, excluded.last_arrival), open = 1",
                (instance.study_uid, received_at),
            )

    def known_paths(self) -> set[str]:
        """Give the paths of every instance received, as stored."""
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT path FROM instances")}

    # --- scoring

    def unscored(self) -> tuple[int, float | None]:
        """How many instances wait for a scoring pass, and when the first of them arrived."""
        with self._lock:
            count, first = self._db.execute(
                "SELECT count(*), min(received_at) FROM instances WHERE scored_at IS NULL"
            ).fetchone()
            return count, first

    def mark_scored(self, received_before: float, scored_at: float) -> None:
        """Record that every instance received before a time has its row in the results now.

        Args:
            received_before: Instances received before it are marked scored.
            scored_at: When the pass ended (seconds since the epoch).
        """
        with self._transaction() as db:
            db.execute(
                "UPDATE instances SET scored_at = ? WHERE scored_at IS NULL AND received_at < ?",
                (scored_at, received_before),
            )

    def quiet_studies(self, last_arrival_before: float) -> list[tuple[str, float]]:
        """Give the open studies that are quiet and scored, to report.

        Args:
            last_arrival_before: A study whose last instance arrived after it is not quiet yet.

        Returns:
            (StudyInstanceUID, last arrival) of each open study with every instance scored.
        """
        with self._lock:
            return [
                (row[0], row[1])
                for row in self._db.execute(
                    "SELECT study_uid, last_arrival FROM studies s WHERE open = 1 AND last_arrival <= ? AND NOT EXISTS "
                    "(SELECT 1 FROM instances i WHERE i.study_uid = s.study_uid AND scored_at IS NULL) "
                    "ORDER BY last_arrival",
                    (last_arrival_before,),
                )
            ]

    def next_quiet_time(self) -> float | None:
        """The last arrival of the open study that arrived first; None when no study is open."""
        with self._lock:
            return self._db.execute("SELECT min(last_arrival) FROM studies WHERE open = 1").fetchone()[0]

    def instance_paths(self, study_uid: str) -> list[Path]:
        """Give the files of a study's instances, sorted.

        Args:
            study_uid: The StudyInstanceUID.

        Returns:
            The instance files of the study.
        """
        with self._lock:
            return [
                Path(row[0])
                for row in self._db.execute(
                    "SELECT path FROM instances WHERE study_uid = ? ORDER BY path", (study_uid,)
                )
            ]

    # --- reports and the outbox

    def report_fingerprints(self) -> dict[str, str]:
        """Give each report file's fingerprint, by path, as written when it was queued."""
        with self._lock:
            return dict(self._db.execute("SELECT path, fingerprint FROM reports"))

    def complete_study(
        self,
        study_uid: str,
        verdict: str,
        reports: Sequence[ReportFile],
        queue: Sequence[Queued],
        last_arrival: float,
        now: float,
    ) -> None:
        """Close a study, record its reports as seen and queue their sends, in one transaction.

        A queued file is the outbox's own link to a report, which a later report never changes.

        Args:
            study_uid: The StudyInstanceUID.
            verdict: The study's verdict, kept with it.
            reports: The report files written for it.
            queue: Their sends, one per destination.
            last_arrival: The last arrival the reports cover; the study stays open if an instance arrived after it.
            now: When (seconds since the epoch).
        """
        with self._transaction() as db:
            db.execute(
                "UPDATE studies SET open = CASE WHEN last_arrival <= ? THEN 0 ELSE 1 END, reported_at = ?, "
                "verdict = ? WHERE study_uid = ?",
                (last_arrival, now, verdict, study_uid),
            )
            for item in queue:
                db.execute(
                    "INSERT OR IGNORE INTO outbox (destination, sop_instance_uid, sop_class_uid, study_uid, file, "
                    "queued_at, next_try) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (item.destination, item.sop_instance_uid, item.sop_class_uid, study_uid, str(item.file), now, now),
                )
            for report in reports:
                db.execute(
                    "INSERT OR REPLACE INTO reports VALUES (?, ?, ?)", (str(report.path), report.fingerprint, study_uid)
                )

    def due(self, now: float) -> list[Queued]:
        """Report files not yet acknowledged whose next try has come, by destination then queue order."""
        with self._lock:
            return [
                Queued(row[0], row[1], row[2], row[3], Path(row[4]), row[5])
                for row in self._db.execute(
                    "SELECT destination, sop_instance_uid, sop_class_uid, study_uid, file, attempts FROM outbox "
                    "WHERE sent_at IS NULL AND next_try <= ? ORDER BY destination, queued_at, sop_instance_uid",
                    (now,),
                )
            ]

    def next_try(self) -> float | None:
        """Give when the earliest unsent report is due, or None when nothing waits."""
        with self._lock:
            return self._db.execute("SELECT min(next_try) FROM outbox WHERE sent_at IS NULL").fetchone()[0]

    def mark_sent(self, item: Queued, now: float) -> None:
        """Record that a destination acknowledged a report.

        Args:
            item: The queued report.
            now: When (seconds since the epoch).
        """
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET sent_at = ?, attempts = attempts + 1, last_error = '' "
                "WHERE destination = ? AND sop_instance_uid = ?",
                (now, item.destination, item.sop_instance_uid),
            )

    def mark_failed(self, item: Queued, error: str, next_try: float) -> None:
        """Record a failed try of a report and when to try again.

        Args:
            item: The queued report.
            error: Why it failed, for --status.
            next_try: When to try again (seconds since the epoch).
        """
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_try = ? "
                "WHERE destination = ? AND sop_instance_uid = ?",
                (error, next_try, item.destination, item.sop_instance_uid),
            )

    def pending_for(self, study_uid: str, destination: str) -> int:
        """Count a study's reports not yet acknowledged by a destination.

        Args:
            study_uid: The StudyInstanceUID.
            destination: The node, as `AET@HOST:PORT`.

        Returns:
            How many are still queued.
        """
        with self._lock:
            return self._db.execute(
                "SELECT count(*) FROM outbox WHERE study_uid = ? AND destination = ? AND sent_at IS NULL",
                (study_uid, destination),
            ).fetchone()[0]

    def still_queued(self, file: Path) -> bool:
        """Tell whether a report file still waits to be sent somewhere.

        Args:
            file: The report file.

        Returns:
            True while a destination has not acknowledged it.
        """
        with self._lock:
            return (
                self._db.execute("SELECT 1 FROM outbox WHERE file = ? AND sent_at IS NULL", (str(file),)).fetchone()
                is not None
            )

    # --- status

    def counts(self) -> Counts:
        """Give the counts `xscan listen --status` prints.

        Returns:
            Instances received and awaiting, studies, reports sent and queued, and each destination's undelivered.
        """
        with self._lock:

            def one(sql: str) -> int:
                return self._db.execute(sql).fetchone()[0]

            undelivered = tuple(
                Undelivered(*row)
                for row in self._db.execute(
                    "SELECT destination, count(*), (SELECT last_error FROM outbox o "
                    "WHERE o.destination = q.destination AND sent_at IS NULL AND attempts > 0 "
                    "ORDER BY next_try DESC LIMIT 1), min(next_try) FROM outbox q "
                    "WHERE sent_at IS NULL AND attempts > 0 GROUP BY destination ORDER BY destination"
                )
            )
            return Counts(
                received=one("SELECT count(*) FROM instances"),
                awaiting=one(
                    "SELECT count(*) FROM instances WHERE study_uid IN (SELECT study_uid FROM studies WHERE open = 1)"
                ),
                awaiting_studies=one("SELECT count(*) FROM studies WHERE open = 1"),
                scored=one("SELECT count(*) FROM instances WHERE scored_at IS NOT NULL"),
                studies_reported=one("SELECT count(*) FROM studies WHERE reported_at IS NOT NULL"),
                sent=one("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL"),
                to_send=one("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND attempts = 0"),
                to_resend=one("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND attempts > 0"),
                undelivered=undelivered,
            )


def now() -> float:
    """The store's clock: wall-clock seconds, as arrival times survive a restart."""
    return time.time()
