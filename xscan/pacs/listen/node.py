"""The listener as a service: reception, scoring, reporting and sending on their own threads around one state store.

Reception (pynetdicom's threads, `receive`) only stores and acknowledges. A scoring thread scores
what has arrived with `score_folder` into DIR/results.csv, in batches (the model loaded once for
the life of the listener; a file already scored and unchanged is not read again). A reporting
thread, once a study has had no new instance for the quiet period and all of it is scored,
writes its report with `report_studies` into DIR/reports/ and queues every file that call made
for each destination. A sending thread stores
the queue on the destinations (`forward`). None of them blocks another; a restart finds each
instance and report where the store says it is. The library call prints nothing: what happens is
told to `on_event`, from any of these threads.
"""

from __future__ import annotations

import os
import shutil
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from xscan.errors import OptionError, XscanError, one_line
from xscan.pacs.listen.forward import Backoff, SendFailed, StudySent, send_due
from xscan.pacs.listen.receive import (
    INSTANCES,
    Allowed,
    AssociationEnded,
    Reception,
    fsync_folder,
    start_server,
    tls_context,
)
from xscan.pacs.listen.store import Counts, Queued, ReportFile, Store, StoreError, now
from xscan.pacs.send import Node

if TYPE_CHECKING:
    from xscan.model.scorer import Scorer
    from xscan.pacs.studies import Study
    from xscan.scoring.results import Row

RESULTS = "results.csv"
REPORTS = "reports"
OUTBOX = "outbox"  # the queue's own links to report files: a later report never changes what is queued
RETRY_S = 5.0  # after a scoring or reporting pass failed (a full disk, the results locked by another run)
GATHER_FILMS = 32  # a scoring pass starts once this many films wait (a batch), ...
GATHER_S = 1.0  # ... or the first of them has waited this long
JOIN_S = 30.0  # how long a stop waits for the scoring pass or the send in progress


@dataclass(frozen=True, kw_only=True)
class ListenOptions:
    """How `xscan listen` runs: every option of the command, and the host to bind (all interfaces by default)."""

    store: Path
    port: int = 11112  # 0: any free port (tests)
    ae_title: str = "XSCAN"
    allow: tuple[Allowed, ...] = ()  # empty: any calling AE title, from any host
    send: tuple[Node, ...] = ()
    quiet_period: float = 30.0  # seconds without a new instance after which a study is complete
    calibration: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    host: str = ""
    backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        """Refuse options no listener can run with.

        Raises:
            OptionError: A port, AE title, quiet period or other setting out of range (exit 2).
        """
        if not 0 <= self.port < 65536:
            raise OptionError(f"--port must lie between 1 and 65535, not {self.port}")
        if not 0 < len(self.ae_title.strip()) <= 16 or "\\" in self.ae_title:
            raise OptionError("--ae-title must have 1 to 16 characters and no backslash")
        if self.quiet_period < 0:
            raise OptionError(f"--quiet-period must be 0 seconds or more, not {self.quiet_period}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise OptionError("TLS needs both --tls-cert and --tls-key")
        if self.tls_ca is not None and self.tls_cert is None:
            raise OptionError("--tls-ca checks the peers of a TLS listener: give --tls-cert and --tls-key too")

    def ssl_context(self) -> ssl.SSLContext | None:
        """Give the TLS context of --tls-cert and --tls-key (and --tls-ca), or None without TLS.

        Returns:
            The server-side context, or None when no certificate and key were given.
        """
        if self.tls_cert is None or self.tls_key is None:
            return None
        return tls_context(self.tls_cert, self.tls_key, self.tls_ca)


@dataclass(frozen=True)
class Listening:
    """The listener accepts associations."""

    port: int
    ae_title: str
    store: Path
    destinations: tuple[str, ...]
    tls: bool
    allowed: int  # entries of the allow-list; 0: any caller


@dataclass(frozen=True)
class StudyReported:
    """A study was complete: scored, its report written and queued for every destination."""

    study_uid: str
    instances: int
    verdict: str
    reports: int  # report files new or changed for this study
    destinations: tuple[str, ...]


@dataclass(frozen=True)
class PassFailed:
    """A scoring or reporting pass failed; it is tried again in RETRY_IN seconds."""

    reason: str
    retry_in: float


@dataclass(frozen=True)
class Stopping:
    """The listener accepts no more associations and lets those in progress finish."""

    active: int


Event = Listening | AssociationEnded | StudyReported | StudySent | SendFailed | PassFailed | Stopping


def listen_status(store: Path) -> Counts:
    """Give the counts of a listener's state, read without starting a listener.

    Args:
        store: The --store folder.

    Returns:
        The counts `--status` prints.

    Raises:
        StoreError: The folder holds no listener state.
    """
    state = Store(store, create=False)
    try:
        return state.counts()
    finally:
        state.close()


class Listener:
    """A running DICOM node: `start()`, then `serve()` until `request_stop()` (a signal handler may call it)."""

    def __init__(
        self, options: ListenOptions, on_event: Callable[[Event], None] | None = None, scorer: Scorer | None = None
    ) -> None:
        """Set up a listener; nothing is opened or started until `start()`.

        Args:
            options: What to listen on, where to store, where to send.
            on_event: Called with every event (Listening, AssociationEnded, StudyReported, ...); from several threads.
            scorer: A model already loaded (tests); None loads the bundled model at start.
        """
        self.options = options
        self.folder = options.store.resolve()
        self.port = options.port
        self._notify = on_event or (lambda event: None)
        self._scorer = scorer
        self._stop_requested = threading.Event()
        self._halt = threading.Event()
        self._work = threading.Event()  # an instance arrived: scoring has work
        self._scored = threading.Event()  # a scoring pass ended: a quiet study may be complete now
        self._outgoing = threading.Event()  # reports were queued: sending has work
        self._failure: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._server = None
        self.store: Store | None = None

    def start(self) -> None:
        """Open the store (StoreError: exit 3), listen (UsageError on a port in use), load the model, start the work."""
        from xscan.model.scorer import load_scorer

        context = self.options.ssl_context()
        self.store = Store(self.folder)
        self.reception = Reception(self.store, self.options.allow, self._work.set, self._notify)
        try:
            self.reception.prepare()
            self.reception.adopt_orphans()
            (self.folder / REPORTS).mkdir(exist_ok=True)
            (self.folder / OUTBOX).mkdir(exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot use {self.folder} as the listener's store: {error.strerror or error}") from None
        self._server = start_server(
            self.reception, self.options.ae_title, self.options.port, self.options.host, context
        )
        self.port = self._server.server_address[1]
        try:  # reception runs already; scoring needs the model
            if self._scorer is None:
                self._scorer = load_scorer()
            if self.options.calibration is not None:
                from xscan.model.site_calibration import load_site

                load_site(self.options.calibration, self._scorer.card.model_id)  # refused now, not at the first study
        except BaseException:
            self._server.shutdown()
            raise
        for target, name in (
            (self._scoring, "xscan-listen-score"),
            (self._reporting, "xscan-listen-report"),
            (self._send, "xscan-listen-send"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._notify(
            Listening(
                self.port,
                self.options.ae_title,
                self.folder,
                tuple(str(node) for node in self.options.send),
                context is not None,
                len(self.options.allow),
            )
        )

    def request_stop(self) -> None:
        """Ask `serve` to stop; safe from a signal handler."""
        self._stop_requested.set()

    def serve(self) -> None:
        """Run until `request_stop`, then stop accepting, let the associations in progress finish, and stop the work.

        An unexpected error in the scoring or sending thread stops the listener too, and is raised here.
        """
        while not self._stop_requested.wait(timeout=1.0):
            pass
        self.stop()
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        """Stop listening, let the associations in progress finish, stop the work threads, then close the store."""
        if self._server is not None:
            active = list(self._server.active_associations)
            self._notify(Stopping(len(active)))
            self._server.shutdown()  # no new association; those in progress run on their own threads
            for association in active:
                association.join()
            self._server = None
        self._halt.set()
        self._work.set()
        self._scored.set()
        self._outgoing.set()
        for thread in self._threads:
            thread.join(JOIN_S)  # past that, a pass is cut as a kill would cut it: the next start completes it
        if self.store is not None and not any(thread.is_alive() for thread in self._threads):
            self.store.close()

    def __enter__(self) -> Listener:
        """Start the listener.

        Returns:
            The listener, started.
        """
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the listener."""
        self.stop()

    # --- the scoring thread: what has arrived, in batches

    def _scoring(self) -> None:
        self._guarded(self._score_once, self._work, self._score_wait)

    def _score_wait(self) -> float:
        _, first_unscored = self.store.unscored()
        return 3600.0 if first_unscored is None else max(0.05, first_unscored + GATHER_S - now())

    def _score_once(self) -> None:
        count, first = self.store.unscored()
        # A pass has a cost of its own (walk, results rewritten): gather a batch while films stream in.
        if count and (count >= GATHER_FILMS or first + GATHER_S <= now()):
            self._score_pass()
            self._scored.set()

    def _score_pass(self) -> None:
        from xscan.scoring.options import ScoreOptions
        from xscan.scoring.run import score_folder

        started = now()
        score_folder(
            self.folder / INSTANCES,
            self.folder / RESULTS,
            ScoreOptions(calibration=self.options.calibration),
            scorer=self._scorer,
        )
        self.store.mark_scored(received_before=started, scored_at=now())

    # --- the reporting thread: the reports of complete studies, queued for sending

    def _reporting(self) -> None:
        self._guarded(self._report_once, self._scored, self._report_wait)

    def _report_wait(self) -> float:
        oldest = self.store.next_quiet_time()
        return 3600.0 if oldest is None else max(0.05, oldest + self.options.quiet_period - now())

    def _report_once(self) -> None:
        quiet = self.store.quiet_studies(now() - self.options.quiet_period)
        if quiet:
            self._complete(quiet)

    def _complete(self, quiet: Sequence[tuple[str, float]]) -> None:
        from xscan.pacs.run import report_studies

        results = self.folder / RESULTS
        members = {uid: self.store.instance_paths(uid) for uid, _ in quiet}
        delivered = report_studies(
            results,
            self.folder / REPORTS,
            files={path for paths in members.values() for path in paths},
            scorer=self._scorer,  # the heatmap images' network: the one loaded for scoring, not a second copy
        )
        changed = self._changed_reports()
        verdicts = self._verdicts(delivered.studies, members)
        for uid, last_arrival in quiet:
            reports = [report for report in changed if report.study_uid == uid]
            queue = [self._queue(report, node) for report in reports for node in self.options.send]
            fsync_folder(self.folder / OUTBOX)
            self.store.complete_study(uid, verdicts[uid][1], reports, queue, last_arrival, now())
            destinations = tuple(str(node) for node in self.options.send) if reports else ()
            self._notify(StudyReported(uid, verdicts[uid][0], verdicts[uid][1], len(reports), destinations))
        self._outgoing.set()

    def _changed_reports(self) -> list[ReportFile]:
        """The report files that the report writer made or changed since the store last looked."""
        import pydicom
        from pydicom.errors import InvalidDicomError

        from xscan.pacs.sr import REPLACED_FOLDER

        seen = self.store.report_fingerprints()
        found = []
        for path in sorted((self.folder / REPORTS).rglob("*.dcm")):
            if REPLACED_FOLDER in path.relative_to(self.folder / REPORTS).parts:
                continue  # a report an amendment replaced: the PACS has it already, and its successor names it
            status = path.stat()
            fingerprint = f"{status.st_size}:{status.st_mtime_ns}:{status.st_ino}"
            if seen.get(str(path)) == fingerprint:
                continue
            try:
                header = pydicom.dcmread(
                    path, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SOPInstanceUID", "SOPClassUID"]
                )
            except (InvalidDicomError, ValueError, EOFError):
                continue  # not a report the writer made (a stray file): nothing to send
            if not {"StudyInstanceUID", "SOPInstanceUID", "SOPClassUID"} <= set(header.dir()):
                continue
            found.append(
                ReportFile(
                    path, fingerprint, str(header.StudyInstanceUID), str(header.SOPInstanceUID), str(header.SOPClassUID)
                )
            )
        return found

    def _queue(self, report: ReportFile, node: Node) -> Queued:
        link = self.folder / OUTBOX / f"{report.sop_instance_uid}.dcm"
        if not link.exists():
            try:
                os.link(report.path, link)
            except OSError:
                shutil.copyfile(report.path, link)  # a file system without hard links
            with open(link, "rb") as stream:
                os.fsync(stream.fileno())
        return Queued(str(node), report.sop_instance_uid, report.sop_class_uid, report.study_uid, link, 0)

    def _verdicts(self, studies: Sequence[Study], members: Mapping[str, Sequence[Path]]) -> dict[str, tuple[int, str]]:
        """Each study's instance count and verdict in words, from the studies `report_studies` grouped.

        Args:
            studies: The studies of the members' rows, as `report_studies` grouped them (in the results' order).
            members: Each complete study's instance files, by its StudyInstanceUID.

        Returns:
            Per StudyInstanceUID, its instance count and its verdict in words.
        """
        from xscan.pacs.studies import file_of

        owner = {path: uid for uid, paths in members.items() for path in paths}
        first: dict[str, Study] = {}  # a study's own rows grouped alone give the same groups, in the same order
        for study in studies:
            for uid in {owner.get(file_of(member.row)) for member in study.files} - {None}:
                first.setdefault(uid, study)
        return {
            uid: (len(paths), _in_words(first[uid].verdict()) if uid in first else "no row in the results")
            for uid, paths in members.items()
        }

    # --- the sending thread

    def _send(self) -> None:
        self._guarded(self._send_once, self._outgoing, self._send_wait)

    def _send_once(self) -> None:
        send_due(self.store, self.options.ae_title, self.options.backoff, self._notify)

    def _send_wait(self) -> float:
        next_try = self.store.next_try()
        return 3600.0 if next_try is None else max(0.05, next_try - now())

    def _guarded(self, once: Callable[[], None], wake: threading.Event, wait: Callable[[], float]) -> None:
        """Run ONCE whenever WAKE is set or WAIT's seconds pass, until the listener halts.

        An XscanError or OSError (a full disk, results locked by another run) is told and retried;
        anything else is a bug: it stops the listener, and `serve` raises it.
        """
        while not self._halt.is_set():
            wake.clear()
            try:
                once()
                pause = wait()
            except (XscanError, OSError) as error:
                self._notify(PassFailed(one_line(error), RETRY_S))
                pause = RETRY_S
            except BaseException as error:
                self._failure = error
                self._stop_requested.set()
                return
            wake.wait(pause)


def _in_words(verdict: Row) -> str:
    if verdict.probability is None:
        return f"not scored ({verdict.error})"
    return f"{verdict.label} ({verdict.probability:.3f})" + (
        f", out of scope: {verdict.scope}" if verdict.scope else ""
    )
