"""Warnings raised while a file is read (pydicom's remarks on odd files), kept with that file instead of printed.

Files are read on a thread pool, and `warnings.catch_warnings` swaps process-wide state, so it
cannot be entered per file. Instead a run installs one hook for its whole duration
(`warnings_kept`), and each thread says what it is collecting for (`collected`, a thread-local
list): every warning raised on that thread, and every record pydicom logs at WARNING or above,
lands in that list, each time it occurs, whatever the filters say. Warnings on other threads
are shown as Python shows them. A reader's warnings, marked with its file, are handed over to
the thread that takes the file from it (`hand_over`), so that they reach the run's own list.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath

from xscan.errors import one_line
from xscan.input.shared_install import SharedInstall

# pydicom logs each of its warnings as well as raising it (misc.warn_and_log): the warning is kept, the log record not;
# nor is a record of an exception (a decoder's failure), which goes on to be raised and becomes the file's error.
LOGGED_AND_WARNED = "warn_and_log"


@dataclass(frozen=True)
class FileWarning:
    """One warning raised while a file was read."""

    category: str  # the warning's class (UserWarning), or the log level of a pydicom log record (WARNING)
    origin: str  # where it was raised, package folder, file and line: pydicom/valuerep.py:440; one kind of warning
    message: str  # on one line; the same kind of warning may say different things of different files
    path: Path | None = None  # the file being read when it was raised; None for one the run raised itself


@dataclass
class WarningKind:
    """How often one kind of warning (one origin and category) occurred, and what it said the first time."""

    category: str
    origin: str
    first_message: str
    count: int = 0


def tally(found: Iterable[FileWarning]) -> list[WarningKind]:
    """Count warnings by kind (origin and category).

    Args:
        found: the warnings, in the order they occurred.

    Returns:
        One WarningKind per kind, in the order each first occurred, with its first message.
    """
    kinds: dict[tuple[str, str], WarningKind] = {}
    for warning in found:
        kind = kinds.setdefault(
            (warning.category, warning.origin), WarningKind(warning.category, warning.origin, warning.message)
        )
        kind.count += 1
    return list(kinds.values())


_local = threading.local()


@contextmanager
def collected() -> Iterator[list[FileWarning]]:
    """Collect the warnings raised on this thread within, while a `warnings_kept` is open somewhere.

    Yields:
        The list they are appended to, each time one occurs; an outer `collected` gets them no more.
    """
    outer = getattr(_local, "sink", None)
    sink: list[FileWarning] = []
    _local.sink = sink
    try:
        yield sink
    finally:
        _local.sink = outer


def hand_over(raised: Iterable[FileWarning]) -> None:
    """Add warnings another thread collected to this thread's `collected` list, if it has one (a run's does).

    Args:
        raised: the warnings, in order.
    """
    sink = _sink()
    if sink is not None:
        sink.extend(raised)


def _sink() -> list[FileWarning] | None:
    return getattr(_local, "sink", None)


def _origin(filename: str, lineno: int) -> str:
    """Name a file below the import root it was found in (pydicom/valuerep.py), and the line."""
    path = PurePath(filename)
    roots = [PurePath(entry) for entry in sys.path if entry and path.is_relative_to(entry)]
    where = path.relative_to(max(roots, key=lambda root: len(root.parts))).as_posix() if roots else path.name
    return f"{where}:{lineno}"


class _PydicomLogKeeper(logging.Handler):
    """pydicom's log records at WARNING and above, kept with the file being read on the record's thread."""

    def emit(self, record: logging.LogRecord) -> None:
        sink = _sink()
        if sink is not None and record.funcName != LOGGED_AND_WARNED and record.exc_info is None:
            sink.append(
                FileWarning(record.levelname, _origin(record.pathname, record.lineno), one_line(record.getMessage()))
            )


class _Hook:
    """What `warnings_kept` installs and takes away again: the process-wide part, shared by overlapping runs."""

    def __init__(self) -> None:
        self.saved: warnings.catch_warnings | None = None
        self.log_handler = _PydicomLogKeeper(logging.WARNING)
        self.pydicom_propagated = True
        self.shared = SharedInstall(self._install, self._uninstall)

    def _install(self) -> None:
        self.saved = warnings.catch_warnings()
        self.saved.__enter__()
        warnings.simplefilter("always")  # every occurrence, each file's own: no once-per-place memory
        shown = warnings.showwarning

        def keep_or_show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: object = None,
            line: str | None = None,
        ) -> None:
            sink = _sink()
            if sink is None:
                shown(message, category, filename, lineno, file, line)
            else:
                sink.append(FileWarning(category.__name__, _origin(filename, lineno), one_line(Warning(message))))

        warnings.showwarning = keep_or_show
        pydicom_log = logging.getLogger("pydicom")
        pydicom_log.addHandler(self.log_handler)
        # Its records are kept with the file; they must not also reach a handler on the root logger (stderr).
        self.pydicom_propagated, pydicom_log.propagate = pydicom_log.propagate, False

    def _uninstall(self) -> None:
        pydicom_log = logging.getLogger("pydicom")
        pydicom_log.removeHandler(self.log_handler)
        pydicom_log.propagate = self.pydicom_propagated
        if self.saved is not None:
            self.saved.__exit__(None, None, None)
            self.saved = None


_hook = _Hook()


@contextmanager
def warnings_kept() -> Iterator[None]:
    """Keep warnings on threads inside `collected` in their lists instead of showing them, while open.

    Install it on the thread that starts the readers, before they start, and close it after they
    end (a run does); runs that overlap share one installation (`SharedInstall`).

    Yields:
        Nothing; on leaving, Python's warning filters, `showwarning` and pydicom's logger are as before.
    """
    with _hook.shared.held():
        yield
