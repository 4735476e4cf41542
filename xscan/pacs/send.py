"""Storing structured reports on a DICOM node (a PACS) by C-STORE, each at most once per node.

Every report stored is recorded at once in a sent log beside the reports (SENT_LOG: node, SOP
Instance UID, file), so a re-run, after a refused association, a rejected report or a kill, sends
only what that node has not acknowledged. Nothing is deleted: SR_DIR keeps every report.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from xscan.errors import OptionError, RunError

if TYPE_CHECKING:
    from pynetdicom.association import Association

SENT_LOG = "sent.csv"
SENT_COLUMNS = ("node", "sop_instance_uid", "file")
CALLING_AE_TITLE = "XSCAN"
# C-STORE statuses that mean stored: success, and the warnings "coerced", "elements discarded",
# "does not match SOP class".
STORED = frozenset({0x0000, 0xB000, 0xB006, 0xB007})
TIMEOUT_S = 30  # per network step: a node that does not answer in this time is unreachable
_NODE = re.compile(r"^([^@\\]{1,16})@(\[[0-9a-fA-F:]+\]|[^:@\s]+):(\d{1,5})$")


class DeliveryError(RunError):
    """Reports could not be stored on the node: no association, or some files rejected; what was not stored stays."""


@dataclass(frozen=True)
class Node:
    """A DICOM node as `AET@HOST:PORT`."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Node:
        """Read a node as `--send` takes it.

        Args:
            text: `AET@HOST:PORT`.

        Returns:
            The node.

        Raises:
            OptionError: The text is not a node (exit 2).
        """
        match = _NODE.match(text.strip())
        if not match or not 0 < int(match.group(3)) < 65536 or not match.group(1).strip():
            raise OptionError(
                f"{text!r} is not a DICOM node: give AET@HOST:PORT, e.g. ORTHANC@pacs.example.org:4242 "
                "(an AE title of 1 to 16 characters, no backslash)"
            )
        return cls(match.group(1).strip(), match.group(2).strip("[]"), int(match.group(3)))

    def __str__(self) -> str:
        """Give the node as `AET@HOST:PORT`, an IPv6 host in brackets so that `parse` reads it back."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"


@dataclass
class Sent:
    """What a send did: reports stored now, stored by an earlier run, and rejected with the node's reason."""

    node: Node
    stored: list[Path] = field(default_factory=list)
    already: list[Path] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)


def send_reports(paths: Sequence[Path], node: Node, log: Path, calling_ae_title: str = CALLING_AE_TITLE) -> Sent:
    """Store each report on a node unless the sent log says it is there.

    Args:
        paths: The report (and image) files.
        node: The node to store them on.
        log: The sent log, read first and appended to.
        calling_ae_title: xscan's AE title towards the node.

    Returns:
        What was stored now, stored by an earlier run, and rejected.

    Raises:
        DeliveryError: Any file was not stored.
    """
    import pydicom

    sent = Sent(node)
    done = _stored_on(log, node)
    pending = []
    for path in paths:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
        (sent.already if uid in done else pending).append(path)
    if pending:
        _store(pending, node, log, calling_ae_title, sent)
    if sent.rejected:
        first_path, reason = sent.rejected[0]
        raise DeliveryError(
            f"could not deliver: {node} rejected {len(sent.rejected)} of {len(pending)} files "
            f"(first: {_logged_name(first_path, log)}: {reason}); "
            f"{len(sent.stored)} stored now; run again to resend what is missing"
        )
    return sent


class AssociationError(DeliveryError):
    """No association with the node: REASON says why (a host that does not resolve, a refusal, silence)."""

    def __init__(self, message: str, reason: str) -> None:
        """Keep the whole message for a one-off send and the bare reason for a queue's last error.

        Args:
            message: The error as a user reads it, naming the node.
            reason: Why, without the node.
        """
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class StoreOutcome:
    """One file's C-STORE: stored (REASON is None, SOP_INSTANCE_UID its UID) or not, and why."""

    path: Path
    sop_instance_uid: str
    reason: str | None


@contextmanager
def open_association(node: Node, calling_ae_title: str, sop_classes: Iterable[str]) -> Iterator[Association]:
    """Associate with a node for C-STORE of the given SOP classes, released when the block ends.

    Args:
        node: The node to associate with.
        calling_ae_title: xscan's AE title towards the node.
        sop_classes: The SOP Class UIDs to propose, one presentation context each.

    Yields:
        The established association.

    Raises:
        AssociationError: The host does not resolve or cannot be reached, or the node refused or did not answer.
    """
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = TIMEOUT_S
    for sop_class in sorted(set(sop_classes)):
        ae.add_requested_context(sop_class)
    try:
        association = ae.associate(node.host, node.port, ae_title=node.ae_title)
    except OSError as error:  # socket.gaierror (a host name that does not resolve) and its kin
        reason = f"{node.host!r} {_network_reason(error)}"
        raise AssociationError(f"could not deliver to {node}: {reason}", reason) from None
    if not association.is_established:
        reason = _why_not(association)
        raise AssociationError(
            f"could not deliver: {node} refused the association or did not answer ({reason})", reason
        )
    try:
        yield association
    finally:
        if association.is_established:
            association.release()


def store_each(association: Association, paths: Sequence[Path]) -> Iterator[StoreOutcome]:
    """C-STORE each file on an established association, one outcome per path in order.

    Each file is read whole just before it is sent, and the next is sent only when the caller asks for its
    outcome, so the caller can record one before the next goes.

    Args:
        association: An association from open_association.
        paths: The DICOM files.

    Yields:
        Each file's outcome; after a lost association, the rest as "association lost".
    """
    import pydicom

    for index, path in enumerate(paths):
        if not association.is_established:
            for rest in paths[index:]:
                yield StoreOutcome(rest, "", "association lost")
            return
        try:
            dataset = pydicom.dcmread(path)
        except OSError as error:
            yield StoreOutcome(path, "", f"cannot read {path.name}: {error.strerror or error}")
            continue
        code = getattr(association.send_c_store(dataset), "Status", None)
        uid = str(dataset.get("SOPInstanceUID", ""))
        if code in STORED:
            yield StoreOutcome(path, uid, None)
        else:
            yield StoreOutcome(path, uid, "no answer" if code is None else f"status 0x{code:04X}")


def _store(paths: list[Path], node: Node, log: Path, calling_ae_title: str, sent: Sent) -> None:
    import pydicom

    # Headers only here, each file read whole just before it is sent: thousands of images never sit in memory at once.
    classes = {
        str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"]).SOPClassUID) for path in paths
    }
    with _quiet_pynetdicom():
        try:
            with open_association(node, calling_ae_title, classes) as association:
                with open(log, "a", newline="", encoding="utf-8") as stream:
                    writer = csv.writer(stream)
                    if stream.tell() == 0:
                        writer.writerow(SENT_COLUMNS)
                    for outcome in store_each(association, paths):
                        if outcome.reason is None:
                            writer.writerow((str(node), outcome.sop_instance_uid, _logged_name(outcome.path, log)))
                            stream.flush()  # recorded before the next is sent: a re-run never sends it twice
                            sent.stored.append(outcome.path)
                        else:
                            sent.rejected.append((outcome.path, outcome.reason))
        except AssociationError as error:
            raise DeliveryError(f"{error}; nothing sent, the {len(paths)} files stay to send") from None


def _logged_name(path: Path, log: Path) -> str:
    """PATH as the sent log names it: below the log's folder (heatmaps/<uid>.dcm), else its name."""
    try:
        return path.relative_to(log.parent).as_posix()
    except ValueError:
        return path.name


def _network_reason(error: OSError) -> str:
    import socket

    if isinstance(error, socket.gaierror):
        return "is not a host name that resolves here (check the spelling and DNS)"
    return f"cannot be reached ({error.strerror or error})"


def _why_not(association: object) -> str:
    if getattr(association, "is_rejected", False):
        return "association rejected: check the called AE title and that the node accepts this one"
    return "no association: nothing listens there, or the node aborted it"


@contextmanager
def _quiet_pynetdicom() -> Iterator[None]:
    """Silence pynetdicom's logger for the call, restored after it.

    pynetdicom logs every failure too; the error xscan raises says it once.
    """
    logger = logging.getLogger("pynetdicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _stored_on(log: Path, node: Node) -> set[str]:
    """The SOP Instance UIDs LOG records as stored on NODE."""
    if not log.exists():
        return set()
    with open(log, newline="", encoding="utf-8") as stream:
        return {record["sop_instance_uid"] for record in csv.DictReader(stream) if record.get("node") == str(node)}
