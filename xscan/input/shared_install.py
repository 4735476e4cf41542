"""A process-wide change shared by overlapping users: made by the first to enter, undone by the last to leave."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class SharedInstall:
    """Reference-counted install and uninstall of one process-wide change (a warnings hook, descriptor 2's capture).

    Runs on several threads, or nested, share one installation: the first `held` installs it, the
    last to leave takes it away, and the process is then as it was before the first.
    """

    def __init__(self, install: Callable[[], None], uninstall: Callable[[], None]) -> None:
        """Hold the change's two halves; nothing is installed yet.

        Args:
            install: Makes the change.
            uninstall: Undoes it, leaving the process as it was.
        """
        self._install = install
        self._uninstall = uninstall
        self._lock = threading.Lock()
        self._users = 0

    @property
    def installed(self) -> bool:
        """Whether some user holds the installation now."""
        return self._users > 0

    @contextmanager
    def held(self) -> Iterator[None]:
        """Within, the change is installed (by this call if it is the first holder).

        Yields:
            Nothing; the installation lasts for the block.
        """
        with self._lock:
            if self._users == 0:
                self._install()
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._uninstall()
