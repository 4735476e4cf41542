"""Sending the queued reports to each destination by C-STORE, with capped exponential backoff after a failure.

What a destination acknowledges is marked sent in the state store at once (the sent log), so a
restart sends only the rest; a refused association, a rejected report or silence sets the item's
next try to BASE x 2^(attempts - 1), capped, and records the reason for `--status`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby

from xscan.errors import printable
from xscan.pacs.listen.store import Queued, Store, now
from xscan.pacs.send import AssociationError, Node, open_association, store_each

BACKOFF_BASE_S = 5.0
BACKOFF_CAP_S = 600.0


@dataclass(frozen=True)
class Backoff:
    """How long a failed send waits before its next try: BASE, then doubled each time, never longer than CAP."""

    base: float = BACKOFF_BASE_S
    cap: float = BACKOFF_CAP_S

    def delay(self, attempts: int) -> float:
        """Give the wait after a failed try.

        Args:
            attempts: How many tries failed (1 for the first).

        Returns:
            The wait in seconds.
        """
        return min(self.cap, self.base * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class StudySent:
    """Every report file of a study is stored on a destination."""

    study_uid: str
    destination: str
    files: int


@dataclass(frozen=True)
class SendFailed:
    """Files could not be stored on a destination; they wait RETRY_IN seconds for their next try."""

    destination: str
    files: int
    reason: str
    retry_in: float


def send_due(
    store: Store,
    calling_ae_title: str,
    backoff: Backoff,
    notify: Callable[[StudySent | SendFailed], None],
) -> None:
    """Try every queued file whose time has come, one association per destination."""
    for destination, items in groupby(store.due(now()), key=lambda item: item.destination):
        _send(store, Node.parse(destination), list(items), calling_ae_title, backoff, notify)


def _send(
    store: Store,
    node: Node,
    items: Sequence[Queued],
    calling_ae_title: str,
    backoff: Backoff,
    notify: Callable[[StudySent | SendFailed], None],
) -> None:
    failed: list[tuple[Queued, str]] = []
    try:
        with open_association(node, calling_ae_title, {item.sop_class_uid for item in items}) as association:
            for item, outcome in zip(items, store_each(association, [item.file for item in items]), strict=True):
                if outcome.reason is not None:
                    failed.append((item, outcome.reason))
                    continue
                store.mark_sent(item, now())
                if not store.still_queued(item.file):
                    item.file.unlink(missing_ok=True)  # the queue's own link: the report itself stays in reports/
                _tell_if_study_done(store, item, items, notify)
    except AssociationError as error:
        # A refusal, silence or a host that does not resolve: every item waits for its next try, and the
        # other destinations still get theirs.
        failed = [(item, error.reason) for item in items]
    for item, reason in failed:
        store.mark_failed(item, printable(f"{node}: {reason}", 200), now() + backoff.delay(item.attempts + 1))
    if failed:
        first = failed[0]
        notify(SendFailed(str(node), len(failed), first[1], backoff.delay(first[0].attempts + 1)))


def _tell_if_study_done(
    store: Store, item: Queued, items: Sequence[Queued], notify: Callable[[StudySent | SendFailed], None]
) -> None:
    if store.pending_for(item.study_uid, item.destination) == 0:
        files = sum(other.study_uid == item.study_uid for other in items)
        notify(StudySent(item.study_uid, item.destination, files))
