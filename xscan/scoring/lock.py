"""One run per results file: an OS file lock (flock) on `RESULTS.lock` beside it, dropped when the process dies.

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
    """Name the lock file of a results file.

    Args:
        output: The results file.

    Returns:
        `RESULTS.lock` beside it.
    """
    return output.with_name(output.name + ".lock")


@contextmanager
def results_lock(output: Path, wait: bool = False, on_wait: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Hold the lock of a results file for the duration; the kernel drops it when the process dies.

    Args:
        output: The results file.
        wait: Wait for another process's lock instead of refusing at once.
        on_wait: Told the lock file before the wait begins.

    Yields:
        The lock file, which holds this process's id while locked.

    Raises:
        ResultsLockedError: Another run holds the lock, and `wait` is false.
        ResultsFileError: No lock file can be made beside the results file.
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
