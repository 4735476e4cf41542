"""Who xscan is in the DICOM objects it writes: the site's UID root, derived UIDs, this install's device UID, versions.

A UID xscan makes is derived (pydicom's `generate_uid` with entropy sources) from the site's
root and what the object says, so the same results make the same objects on every run. The
device observer UID names this installation of xscan: a random UID made once and stored in the
user's state folder, so that two sites' reports never claim one device.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

from xscan.about import __version__
from xscan.errors import OptionError, RunError

DEFAULT_UID_ROOT = PYDICOM_ROOT_UID  # the root xscan's UIDs have always had; a site passes its own with --uid-root
MAX_ROOT_LENGTH = 40  # a UID is at most 64 characters: the rest holds the derived part
_ROOT = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*\.$")
DEVICE_UID_FILE = "device-uid"
STATE_DIR_VARIABLE = "XSCAN_STATE_DIR"  # overrides where the device UID is kept (tests, containers)


class DeviceIdentityError(RunError):
    """This install's device UID can neither be read nor stored (exit 3: xscan could not do it)."""


def uid_root(text: str | None) -> str:
    """The UID root --uid-root gives (digits and dots, e.g. 1.2.826.0.1.3680043.10.543), ending in a dot.

    Raises OptionError for a root that is not a valid UID prefix or leaves too little room.
    """
    if text is None or not text.strip():
        return DEFAULT_UID_ROOT
    root = text.strip()
    root = root if root.endswith(".") else root + "."
    if not _ROOT.match(root) or len(root) > MAX_ROOT_LENGTH:
        raise OptionError(
            f"{text!r} is not a UID root: give digits separated by dots, no leading zeros, at most "
            f"{MAX_ROOT_LENGTH - 1} characters (e.g. your organisation's root from ISO or 2.25)"
        )
    return root


def derived_uid(root: str, parts: Sequence[str]) -> str:
    """Derive a UID below a root: the same parts always give the same UID.

    Args:
        root: The UID root.
        parts: What the UID stands for.

    Returns:
        The UID.
    """
    return generate_uid(prefix=root, entropy_srcs=[*parts])


def software_versions(model_id: str) -> list[str]:
    """The header's Software Versions: xscan's version and the model id (with any site suffix)."""
    return [f"xscan {__version__}", model_id]


def state_dir() -> Path:
    """Where this install keeps its state: $XSCAN_STATE_DIR, else $XDG_STATE_HOME/xscan, else ~/.local/state/xscan."""
    if os.environ.get(STATE_DIR_VARIABLE):
        return Path(os.environ[STATE_DIR_VARIABLE])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "xscan"


def device_uid(folder: Path | None = None) -> str:
    """Give this install's Device Observer UID, made at first use.

    2.25 UIDs from a random UUID need no registered root and do not collide (ITU-T X.667), so
    each install differs whatever --uid-root says.

    Args:
        folder: Where it is kept (default `state_dir()`).

    Returns:
        The UID.

    Raises:
        DeviceIdentityError: The file can be neither read nor written.
    """
    path = (folder or state_dir()) / DEVICE_UID_FILE
    try:
        if path.exists():
            stored = path.read_text(encoding="ascii").strip()
            if re.fullmatch(r"[0-9.]{3,64}", stored):
                return stored
        made = f"2.25.{uuid.uuid4().int}"
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temporary.write_text(made + "\n", encoding="ascii")
        try:
            os.link(temporary, path)  # never replaces: of two first runs at once, the first one's stands for both
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise DeviceIdentityError(
            f"cannot keep this install's device UID in {path}: {getattr(error, 'strerror', None) or error} "
            f"(set {STATE_DIR_VARIABLE} to a writable folder)"
        ) from None
