"""Reception: the pynetdicom application entity that answers C-ECHO and C-STORE, and writes each instance durably.

An instance is acknowledged only once it is safe: its bytes, as the peer encoded them, go to a
temporary file in the store's folder, which is fsynced, renamed to
`instances/<StudyInstanceUID>/<SOPInstanceUID>.dcm` and its folder fsynced, and then recorded in the
state store. A write that fails (a full disk, a read-only mount) answers Out of Resources (0xA700),
so the sender keeps the instance and retries, and leaves no partial file. UIDs from the wire become
path parts only once they match the DICOM UID grammar. Reception never scores or sends: it only
stores and acknowledges.
"""

from __future__ import annotations

import errno
import io
import os
import re
import socket
import sqlite3
import ssl
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xscan.errors import OptionError, UsageError, printable
from xscan.pacs.listen.store import Instance, Store, now

INSTANCES = "instances"
INCOMING = "incoming"  # temporary files while they are written: never walked by scoring
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
UID_LIMIT = 64
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000  # the data set's UIDs are missing or not UIDs
# A-ASSOCIATE-RJ: rejected permanent, by the service user, calling AE title not recognized (PS3.8 9.3.4).
REJECT_CALLING_AE = (0x01, 0x01, 0x03)
TIMEOUT_S = 60  # per network step: a peer silent for this long is dropped
# Largest PDU a peer may send: 1 MiB takes a 2 MB film in 2 PDUs rather than 128 at pynetdicom's 16 KB default
# (1.4 x the films a second, benchmarks/README.md), and bounds what one PDU may ask this process to hold.
MAX_PDU = 1 << 20
MAX_ASSOCIATIONS = 10  # at once; more are rejected as busy (transient), so the peer retries
_ALLOW = re.compile(r"^([^@\\]{1,16})(?:@(\[[0-9a-fA-F:]+\]|[^@\s]+))?$")


@dataclass(frozen=True)
class Allowed:
    """A calling AE title allowed to associate, from its host's addresses only when a host is given."""

    ae_title: str
    addresses: frozenset[str] = frozenset()  # the host's addresses; empty: any host

    @classmethod
    def parse_list(cls, text: str) -> list[Allowed]:
        """`AET[@HOST][,...]` as `--allow` takes it; a host is resolved now, so a typo fails at start."""
        allowed = []
        for entry in (part.strip() for part in text.split(",")):
            match = _ALLOW.match(entry)
            if not match or not match.group(1).strip():
                raise OptionError(
                    f"--allow: {entry!r} is not AET or AET@HOST (an AE title of 1 to 16 characters, no backslash)"
                )
            host = (match.group(2) or "").strip("[]")
            allowed.append(cls(match.group(1).strip(), _addresses(host) if host else frozenset()))
        return allowed

    def admits(self, ae_title: str, address: str) -> bool:
        """Tell whether a calling AE title from an address is this entry's.

        Args:
            ae_title: The calling AE title (padding ignored).
            address: The peer's IP address.

        Returns:
            True when the title matches and the entry names no host or one of the host's addresses.
        """
        return ae_title.strip() == self.ae_title and (not self.addresses or address in self.addresses)


def _addresses(host: str) -> frozenset[str]:
    try:
        return frozenset(info[4][0] for info in socket.getaddrinfo(host, None))
    except OSError as error:
        raise OptionError(f"--allow: cannot resolve host {host!r} ({error})") from None


def tls_context(cert: Path, key: Path, ca: Path | None) -> ssl.SSLContext:
    """Make a server-side TLS context.

    Args:
        cert: The listener's certificate.
        key: Its private key.
        ca: When given, a peer must show a certificate that chains to it.

    Returns:
        The context.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
        if ca is not None:
            context.load_verify_locations(ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as error:
        raise OptionError(f"cannot use the TLS certificate, key or CA given: {error}") from None
    return context


def valid_uid(text: str) -> bool:
    """Tell whether text is a DICOM UID (PS3.5 9.1): digits in dot-separated parts, at most 64 characters.

    Args:
        text: The candidate UID.

    Returns:
        True for a valid UID.
    """
    return len(text) <= UID_LIMIT and UID.match(text) is not None


@dataclass
class Association:
    """What one association did, for its log line."""

    peer: str
    ae_title: str = ""
    stored: int = 0
    refused: int = 0
    reasons: list[str] = field(default_factory=list)
    not_allowed: bool = False


@dataclass(frozen=True)
class AssociationEnded:
    """An association closed: who called, how many instances it stored or had refused, and how it ended."""

    peer: str
    ae_title: str
    stored: int
    refused: int
    outcome: str  # released, aborted, rejected (...)
    first_reason: str = ""


class Reception:
    """The C-ECHO and C-STORE handlers of a listener storing into STORE's folder."""

    def __init__(
        self,
        store: Store,
        allowed: Sequence[Allowed] = (),
        on_stored: Callable[[], None] = lambda: None,
        on_ended: Callable[[AssociationEnded], None] = lambda ended: None,
    ) -> None:
        """Set up the handlers; nothing is written until `prepare()`.

        Args:
            store: The listener's state; instances are written below its folder.
            allowed: The --allow entries; empty admits every caller.
            on_stored: Called after each instance stored (wakes the scoring thread).
            on_ended: Called with each association's outcome once it closes.
        """
        self.store = store
        self.allowed = list(allowed)
        self.instances = store.folder / INSTANCES
        self.incoming = store.folder / INCOMING
        self._on_stored = on_stored
        self._on_ended = on_ended
        self._lock = threading.Lock()
        self._associations: dict[int, Association] = {}

    def prepare(self) -> None:
        """Create the folders and remove what a killed run left half-written (never acknowledged)."""
        self.instances.mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)
        for leftover in self.incoming.iterdir():
            leftover.unlink(missing_ok=True)

    def adopt_orphans(self) -> int:
        """Record instance files that a kill left renamed into place but not yet recorded; how many there were."""
        import pydicom
        from pydicom.errors import InvalidDicomError

        known = self.store.known_paths()
        adopted = 0
        for path in sorted(self.instances.glob("*/*.dcm")):
            if str(path) in known:
                continue
            try:
                header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
                sop_class = str(header.get("SOPClassUID", ""))
            except (InvalidDicomError, ValueError, EOFError):
                sop_class = ""  # scoring gives it its error row
            self.store.add_instance(
                Instance(path.stem, path.parent.name, sop_class, path, ""),
                path.stat().st_mtime,
            )
            adopted += 1
        return adopted

    def handlers(self) -> list[tuple[object, Callable]]:
        """Give the pynetdicom event handlers of this reception.

        Returns:
            (event, handler) pairs for `AE.start_server`.
        """
        from pynetdicom import evt

        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_C_ECHO, lambda event: SUCCESS),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_CONN_CLOSE, self.on_closed),
        ]

    def _association(self, event: object) -> Association:
        assoc = event.assoc
        with self._lock:
            return self._associations.setdefault(id(assoc), Association(_peer(assoc)))

    def on_requested(self, event: object) -> None:
        """Reject, with the standard reason, a calling AE title (or host) the allow-list does not name."""
        record = self._association(event)
        requestor = event.assoc.requestor
        record.ae_title = printable(str(requestor.primitive.calling_ae_title or "").strip(), 16)
        if self.allowed and not any(rule.admits(record.ae_title, requestor.address) for rule in self.allowed):
            record.not_allowed = True
            event.assoc.acse.send_reject(*REJECT_CALLING_AE)
            event.assoc.kill()  # as pynetdicom's own check does: the reject goes out before the socket closes

    def on_store(self, event: object) -> int:
        """Store one C-STORE's instance durably and count it for its association.

        Args:
            event: pynetdicom's C-STORE event.

        Returns:
            The DIMSE status: success, or the refusal's status (the reason goes to the association's outcome).
        """
        record = self._association(event)
        status, reason = self._store(event, record.ae_title)
        with self._lock:
            if status == SUCCESS:
                record.stored += 1
            else:
                record.refused += 1
                record.reasons.append(reason)
        if status == SUCCESS:
            self._on_stored()
        return status

    def _store(self, event: object, ae_title: str) -> tuple[int, str]:
        import pydicom
        from pydicom.errors import InvalidDicomError

        sop_instance_uid = str(event.request.AffectedSOPInstanceUID or "").strip()
        encoded = event.encoded_dataset(include_meta=True)
        try:
            header = pydicom.dcmread(
                io.BytesIO(encoded), stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SOPClassUID"]
            )
            study_uid = str(header.get("StudyInstanceUID", "")).strip()
        except (InvalidDicomError, ValueError, KeyError, EOFError) as error:
            return CANNOT_UNDERSTAND, f"data set not readable: {error}"
        for name, uid in (("SOP Instance UID", sop_instance_uid), ("Study Instance UID", study_uid)):
            if not valid_uid(uid):
                return CANNOT_UNDERSTAND, f"{name} {printable(uid, 80)!r} is not a DICOM UID"
        path = self.instances / study_uid / f"{sop_instance_uid}.dcm"
        try:
            write_durably(encoded, path, self.incoming)
            instance = Instance(sop_instance_uid, study_uid, str(event.request.AffectedSOPClassUID), path, ae_title)
            self.store.add_instance(instance, now())
        except OSError as error:
            return OUT_OF_RESOURCES, f"cannot store: {error.strerror or error}"
        except sqlite3.Error as error:  # a full disk under the state file: the file stays, adopted at the next start
            return OUT_OF_RESOURCES, f"cannot record: {error}"
        return SUCCESS, ""

    def on_closed(self, event: object) -> None:
        """Report how an association ended (released, aborted, rejected), once.

        Args:
            event: pynetdicom's event of the association's end.
        """
        assoc = event.assoc
        with self._lock:
            record = self._associations.pop(id(assoc), None)
        if record is None:
            return
        if record.not_allowed:
            outcome = "rejected (calling AE title or host not allowed)"
        elif assoc.is_rejected:
            outcome = "rejected (too many associations at once, or no common presentation context)"
        elif assoc.is_aborted:
            outcome = "aborted"
        elif assoc.is_released:
            outcome = "released"
        else:
            outcome = "closed"
        reason = record.reasons[0] if record.reasons else ""
        self._on_ended(AssociationEnded(record.peer, record.ae_title, record.stored, record.refused, outcome, reason))


def decodable_transfer_syntaxes() -> list[str]:
    """The transfer syntaxes whose pixel data this installation's pydicom decodes (the pylibjpeg plugins included)."""
    from pydicom import uid
    from pydicom.pixels import get_decoder

    candidates = [
        uid.ExplicitVRLittleEndian,
        uid.ImplicitVRLittleEndian,
        uid.DeflatedExplicitVRLittleEndian,
        uid.ExplicitVRBigEndian,
        uid.JPEGBaseline8Bit,
        uid.JPEGExtended12Bit,
        uid.JPEGLossless,
        uid.JPEGLosslessSV1,
        uid.JPEGLSLossless,
        uid.JPEGLSNearLossless,
        uid.JPEG2000Lossless,
        uid.JPEG2000,
        uid.HTJ2KLossless,
        uid.HTJ2KLosslessRPCL,
        uid.HTJ2K,
        uid.RLELossless,
    ]
    return [syntax for syntax in candidates if _decodes(get_decoder, syntax)]


def _decodes(get_decoder: Callable, syntax: str) -> bool:
    try:
        return get_decoder(syntax).is_available
    except NotImplementedError:
        return False


def start_server(
    reception: Reception, ae_title: str, port: int, host: str = "", ssl_context: ssl.SSLContext | None = None
) -> object:
    """Listen as a DICOM node, on threads of pynetdicom's own.

    Every storage SOP class is accepted (what the DICOM policy skips, a CT or a lateral, is stored
    and gets its `skipped` row), in every transfer syntax xscan decodes, and Verification.

    Args:
        reception: The handlers.
        ae_title: The listener's AE title.
        port: The port.
        host: The address to bind ("" for all).
        ssl_context: TLS, or None.

    Returns:
        pynetdicom's server, to shut down.
    """
    from pynetdicom import AE, AllStoragePresentationContexts
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=ae_title)
    ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = TIMEOUT_S
    ae.maximum_associations = MAX_ASSOCIATIONS
    ae.maximum_pdu_size = MAX_PDU
    syntaxes = decodable_transfer_syntaxes()
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, syntaxes)
    ae.add_supported_context(Verification)
    try:
        return ae.start_server((host, port), block=False, evt_handlers=reception.handlers(), ssl_context=ssl_context)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} is already in use: stop what listens there, or give another --port"
            ) from None
        raise UsageError(f"cannot listen on port {port}: {error.strerror or error}") from None


def _peer(assoc: object) -> str:
    try:
        return f"{assoc.requestor.address}:{assoc.requestor.port}"
    except AttributeError:
        return "unknown peer"


def write_durably(data: bytes, path: Path, scratch: Path) -> None:
    """Write bytes to a file once they are on disk: a temporary file, fsynced, renamed, its folder fsynced.

    The scratch folder is on the same file system, so the rename is atomic: the path holds the old
    file or the whole new one, never part of one. On any error the temporary file is removed and
    the error raised.

    Args:
        data: The bytes.
        path: The file to write.
        scratch: The folder of the temporary file, on the same file system as the path.
    """
    temporary = scratch / f"{uuid.uuid4().hex}.part"
    try:
        with open(temporary, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        created = not path.parent.exists()
        path.parent.mkdir(exist_ok=True)
        os.replace(temporary, path)
        fsync_folder(path.parent)
        if created:
            fsync_folder(path.parent.parent)  # the new study folder's own entry
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def fsync_folder(folder: Path) -> None:
    """Make the entries of a folder (a rename, a new file) durable.

    Args:
        folder: The folder.
    """
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
