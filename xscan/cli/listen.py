"""`xscan listen`: options, a log line per association and per study, SIGTERM; the node is xscan.pacs.listen's."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from xscan.about import DISCLAIMER
from xscan.cli.app import exit_codes, open_log, say

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)

if TYPE_CHECKING:
    from xscan.pacs.listen.node import Event
    from xscan.pacs.listen.store import Counts
    from xscan.scoring.runlog import RunLog


def listen(
    store: Path = typer.Option(
        ..., "--store", file_okay=False, help="Folder for everything received, the results, reports and state."
    ),
    port: int = typer.Option(11112, "--port", min=1, max=65535, help="TCP port to listen on (all interfaces)."),
    ae_title: str = typer.Option(
        "XSCAN", "--ae-title", help="xscan's AE title: called by senders, calling when it sends."
    ),
    allow: str = typer.Option(
        None,
        "--allow",
        metavar="AET[@HOST][,...]",
        help="Only these calling AE titles (from these hosts, where given) get an association; others are rejected.",
    ),
    send: list[str] = typer.Option(
        None, "--send", metavar="AET@HOST:PORT", help="Store each study's reports on this node; repeat for several."
    ),
    quiet_period: float = typer.Option(
        30.0, "--quiet-period", min=0.0, help="Seconds without a new instance after which a study is complete."
    ),
    calibration: Path = typer.Option(
        None, "--calibration", exists=True, dir_okay=False, help="Site calibration (SITE.json from xscan calibrate)."
    ),
    tls_cert: Path = typer.Option(
        None, "--tls-cert", exists=True, dir_okay=False, help="TLS: this node's certificate."
    ),
    tls_key: Path = typer.Option(None, "--tls-key", exists=True, dir_okay=False, help="TLS: its private key."),
    tls_ca: Path = typer.Option(
        None, "--tls-ca", exists=True, dir_okay=False, help="TLS: a caller's certificate must chain to this CA."
    ),
    log_file: Path = typer.Option(None, "--log-file", help="Append every log line to this file too."),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No log lines on standard error (the log file keeps them)."
    ),
    status: bool = typer.Option(
        False, "--status", help="Print where everything in --store is (received, scored, sent, ...) and exit."
    ),
) -> None:
    """A DICOM node: receive studies from the PACS, score each once complete, send its report back (xscan[pacs]).

    Answers C-ECHO and C-STORE (every storage SOP class, in every transfer syntax xscan
    decodes) as --ae-title on --port. Each instance is on disk (fsynced) before the success status
    goes back; a full disk answers Out of Resources (0xA700), so the sender retries. Instances are
    scored as they arrive, as `xscan score` scores them, into STORE/results.csv; a study is
    complete when no instance of it arrived for --quiet-period seconds: its structured report
    (as `xscan sr` makes it) goes to STORE/reports/ and is stored on every --send node, beside
    reception, retried with backoff (5 s doubling to 10 min) until the node takes it. An
    instance that arrives later re-opens its study and its report is made again. The state (what
    was received, scored, sent) is STORE/listen.sqlite: a restart, even after kill -9, goes on
    where it stopped. SIGTERM stops accepting, lets the associations in progress finish and exits 0.

    Without --allow and TLS anyone who reaches the port can store and learn results: run it
    only on a trusted network (docs/listen.md). xscan aids a physician; it is not a diagnostic device.

    Exit codes: 0 stopped by SIGTERM, or --status printed; 2 a bad option, the port already in
    use, or xscan[pacs] not installed; 3 an unusable store (or an unexpected error); 130 Ctrl-C.

    Example:

    \b
        xscan listen --store /var/lib/xscan --port 11112 --allow ORTHANC@10.0.0.5 \\
            --send ORTHANC@10.0.0.5:4242 --quiet-period 30 --log-file /var/log/xscan-listen.log
        xscan listen --store /var/lib/xscan --status
    """
    from xscan.pacs.extra import require_pacs_extra

    if status:
        with exit_codes():
            from xscan.pacs.listen.node import listen_status

            counts = listen_status(store)
        _print_status(counts)
        return
    log = open_log(log_file)
    with exit_codes(log=log):
        require_pacs_extra()
        from xscan.pacs.listen.node import Listener, ListenOptions
        from xscan.pacs.listen.receive import Allowed
        from xscan.pacs.send import Node

        options = ListenOptions(
            store=store,
            port=port,
            ae_title=ae_title.strip(),
            allow=tuple(Allowed.parse_list(allow)) if allow else (),
            send=tuple(Node.parse(text) for text in send or ()),
            quiet_period=quiet_period,
            calibration=calibration,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_ca=tls_ca,
        )
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # xscan's own lines say what happened, once
        _return_freed_memory()
        listener = Listener(options, on_event=_teller(log, quiet))
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: listener.request_stop())
        try:
            listener.start()
            listener.serve()
        except KeyboardInterrupt:
            listener.stop()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
    _tell(log, quiet, "stopped", "stopped: every association in progress finished")
    log.close()


def _return_freed_memory() -> None:
    """Have glibc give every freed buffer over 128 KB (a film, its pixels) back to the system at once.

    By default it raises that threshold as large buffers are freed and keeps them in per-thread
    arenas; a service with a thread per association then holds hundreds of MB it no longer uses
    (benchmarks/README.md). The process is this command's own: this is set once for its life.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        pass  # not glibc: its allocator keeps its own policy


def _teller(log: RunLog, quiet: bool):
    lock = threading.Lock()

    def tell(event: Event) -> None:
        kind, message = _line(event)
        with lock:
            _tell(log, quiet, kind, message)

    return tell


def _tell(log: RunLog, quiet: bool, kind: str, message: str) -> None:
    log.line(kind, message)
    if not quiet:
        say(message)


def _line(event: Event) -> tuple[str, str]:
    """An event as a log line: its kind and its message."""
    from xscan.pacs.listen.forward import SendFailed, StudySent
    from xscan.pacs.listen.node import Listening, PassFailed, StudyReported
    from xscan.pacs.listen.receive import AssociationEnded

    if isinstance(event, Listening):
        sends = ", ".join(event.destinations) or "nowhere (no --send)"
        guard = f"{event.allowed} allowed callers" if event.allowed else "any caller (no --allow)"
        return "listening", (
            f"listening on port {event.port} as {event.ae_title}{' with TLS' if event.tls else ''}, {guard}; "
            f"store {event.store}; reports go to {sends}"
        )
    if isinstance(event, AssociationEnded):
        refused = f", {event.refused} refused (first: {event.first_reason})" if event.refused else ""
        return "association", (
            f"association from {event.peer} ({event.ae_title or 'no AE title'}): {event.stored} instances stored"
            f"{refused}; {event.outcome}"
        )
    if isinstance(event, StudyReported):
        where = f"queued for {', '.join(event.destinations)}" if event.destinations else "not sent (no --send)"
        if not event.reports:
            where = "no new report"
        return "study", f"study {event.study_uid}: {event.instances} instances, {event.verdict}; {where}"
    if isinstance(event, StudySent):
        return "sent", f"study {event.study_uid}: {event.files} report files stored on {event.destination}"
    if isinstance(event, SendFailed):
        return "send-failed", (
            f"could not store {event.files} files on {event.destination} ({event.reason}); "
            f"next try in {event.retry_in:.0f} s"
        )
    if isinstance(event, PassFailed):
        return "error", f"scoring or reporting failed ({event.reason}); next try in {event.retry_in:.0f} s"
    return "stopping", f"stopping: no new associations; waiting for {event.active} in progress"


def _print_status(counts: Counts) -> None:
    typer.echo(f"received: {counts.received} instances")
    typer.echo(f"awaiting the quiet period: {counts.awaiting} instances in {counts.awaiting_studies} studies")
    typer.echo(f"scored: {counts.scored} instances; {counts.studies_reported} studies reported")
    typer.echo(f"sent: {counts.sent} report files")
    typer.echo(f"to send: {counts.to_send} report files")
    typer.echo(f"waiting to be resent: {counts.to_resend} report files")
    for undelivered in counts.undelivered:
        typer.echo(f"  {undelivered.destination}: {undelivered.files} files; last error: {undelivered.last_error}")
    typer.echo(DISCLAIMER)
