"""The optional packages `xscan sr` needs (the `pacs` extra), checked before any work: one clear message."""

from __future__ import annotations

import importlib

from xscan.errors import UsageError

PACS_PACKAGES = ("highdicom", "pynetdicom")
INSTALL_HINT = "pip install 'xscan[pacs]'"


class MissingExtraError(UsageError):
    """A package of the `pacs` extra is not installed (or does not import)."""


def require_pacs_extra() -> None:
    """Raise MissingExtraError, saying what to install, unless highdicom and pynetdicom import."""
    for name in PACS_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise MissingExtraError(
                f"structured reports need {name}, which is not installed ({error}): {INSTALL_HINT}"
            ) from None
