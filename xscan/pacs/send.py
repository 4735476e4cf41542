"""Storing structured reports on a DICOM node (a PACS) by C-STORE, each at most once per node.

Every report stored is recorded at once in a sent log beside the reports (SENT_LOG: node, SOP
Instance UID, file), so a re-run, after a refused association, a rejected report or a kill, sends
only what that node has not acknowledged. Nothing is deleted: SR_DIR keeps every report.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from xscan.errors import OptionError, RunError

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
        """Give the node as `AET@HOST:PORT`."""
        return f"{self.ae_title}@{self.host}:{self.port}"


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


def _store(paths: list[Path], node: Node, log: Path, calling_ae_title: str, sent: Sent) -> None:
    import pydicom
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = TIMEOUT_S
    # Headers only here, each file read whole just before it is sent: thousands of images never sit in memory at once.
    classes = {
        str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"]).SOPClassUID) for path in paths
    }
    for sop_class in sorted(classes):
        ae.add_requested_context(sop_class)
    with _quiet_pynetdicom():
        try:
            association = ae.associate(node.host, node.port, ae_title=node.ae_title)
        except OSError as error:  # socket.gaierror (a host name that does not resolve) and its kin
            raise DeliveryError(
                f"could not deliver to {node}: {node.host!r} {_network_reason(error)}; "
                f"nothing sent, the {len(paths)} files stay to send"
            ) from None
        if not association.is_established:
            raise DeliveryError(
                f"could not deliver: {node} refused the association or did not answer ({_why_not(association)}); "
                f"nothing sent, the {len(paths)} reports stay to send"
            )
        try:
            with open(log, "a", newline="", encoding="utf-8") as stream:
                writer = csv.writer(stream)
                if stream.tell() == 0:
                    writer.writerow(SENT_COLUMNS)
                for path in paths:
                    ds = pydicom.dcmread(path)
                    status = association.send_c_store(ds)
                    code = getattr(status, "Status", None)
                    if code in STORED:
                        writer.writerow((str(node), str(ds.SOPInstanceUID), _logged_name(path, log)))
                        stream.flush()  # recorded before the next is sent: a kill never makes a re-run send it twice
                        sent.stored.append(path)
                    else:
                        sent.rejected.append((path, "no answer" if code is None else f"status 0x{code:04X}"))
                    if not association.is_established:
                        sent.rejected.extend(
                            (rest, "association lost") for rest in paths[len(sent.stored) + len(sent.rejected) :]
                        )
                        break
        finally:
            if association.is_established:
                association.release()


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
    return "no connection: nothing listens there, or the node aborted it"


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
