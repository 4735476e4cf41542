"""One run per results file: an OS file lock (flock) on `RESULTS.lock` beside it, which the kernel drops when the process dies.

The lock file itself stays: removing it would let a third run lock a new file while the second
still holds the old one. It holds the process id of the run that has the lock, for messages.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from xscan.errors import ResultsFileError, ResultsLockedError


def lock_path(output: Path) -> Path:
    """The lock file of the results file OUTPUT."""
    return output.with_name(output.name + ".lock")


@contextmanager
def results_lock(output: Path, wait: bool = False, on_wait: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Hold the lock of OUTPUT for the duration; refuse at once if another process holds it, or with WAIT wait for it.

    ON_WAIT is told the lock file before the wait begins. Raises ResultsLockedError (another run
    has it) or ResultsFileError (no lock file can be made beside OUTPUT).
    """
    path = lock_path(output)
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise ResultsFileError(
            f"cannot write results file {output}: cannot create its lock file {path}: {error.strerror or error}"
        ) from None
    try:
        if not _try_lock(descriptor):
            if not wait:
                raise ResultsLockedError(
                    f"{output} is being written by another xscan score{_holder(descriptor)}: "
                    f"its lock {path} is held; try again later, or use --wait to wait for it"
                )
            if on_wait is not None:
                on_wait(path)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(descriptor)  # releases the lock


def _try_lock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(descriptor: int) -> str:
    text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
    return f" (process {text})" if text.isdigit() else ""
