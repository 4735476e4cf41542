"""What native code writes on file descriptor 2, read line by line and handed to whoever listens: one capture.

C and C++ libraries (libjpeg and libpng inside OpenCV, a Rust decoder's panic, LiteRT's XNNPACK note,
TensorFlow's start-up notices, Ray's core) write straight to descriptor 2, below Python's
`sys.stderr`, its warning filters and its loggers. While anyone listens (`listening`, and the
`native_stderr_without` and `native_stderr_discarded` built on it) the descriptor is a pipe; a
reader thread takes each line from it and offers it to the listeners, the latest first; a line no
listener takes goes on to the real standard error, as it would have. Python's own `sys.stderr`
writes to the real descriptor meanwhile. The capture is installed once however many listen
(`SharedInstall`), and the last to leave puts descriptor 2 and `sys.stderr` back as they were.

A descriptor is process-wide, so a line cannot say which thread wrote it; `sync` puts a marker in
the pipe and waits for the reader to reach it: every line written before it has then been heard
(`native_messages` tells decoders' lines apart that way).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from xscan.input.shared_install import SharedInstall

# Takes one line as written (bytes, with its line break); True when it is taken, not passed on.
Listener = Callable[[bytes], bool]

MARKER = b"\x00xscan-stderr "
STOP = b"stop"
# How long `sync` waits for the reader to reach its marker; a safeguard only: the reader takes a line in microseconds.
MARKER_WAIT = 10.0
# The pipe's capacity: native code that writes while holding the GIL (a TensorFlow import) must never fill it
# before the reader thread gets to run; Linux's default is 64 KiB, and an unprivileged process may ask for 1 MiB.
PIPE_BYTES = 1 << 20


class _Capture:
    """Descriptor 2 pointed at a pipe, its reader thread, the listeners and the markers not yet reached."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.listeners: list[Listener] = []
        self.markers: dict[int, tuple[threading.Event, Callable[[], None] | None]] = {}
        self.next_token = 0
        self.saved_fd = -1  # the real standard error, while installed
        self.write_fd = -1  # the pipe's own write end (descriptor 2 is another)
        self.reader: threading.Thread | None = None
        self.saved_stderr = sys.stderr
        self.shared = SharedInstall(self._install, self._uninstall)

    def _install(self) -> None:
        sys.stderr.flush()
        self.saved_fd = os.dup(2)
        read_fd, self.write_fd = os.pipe()
        with contextlib.suppress(OSError, AttributeError):  # a smaller pipe still works, the reader just runs sooner
            fcntl.fcntl(self.write_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        os.dup2(self.write_fd, 2)
        self.saved_stderr = sys.stderr
        sys.stderr = open(  # noqa: SIM115  (closed by _uninstall)
            os.dup(self.saved_fd),
            "w",
            buffering=1,
            encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
            errors=getattr(sys.stderr, "errors", None) or "backslashreplace",
        )
        self.reader = threading.Thread(target=self._read, args=(read_fd,), name="xscan-native-stderr", daemon=True)
        self.reader.start()

    def _uninstall(self) -> None:
        replacement, sys.stderr = sys.stderr, self.saved_stderr
        replacement.close()
        os.dup2(self.saved_fd, 2)
        # The reader stops at a marker, not at the pipe's end: a process started meanwhile (Ray's) may hold a write end.
        os.write(self.write_fd, MARKER + STOP + b"\n")
        if self.reader is not None:
            self.reader.join()
            self.reader = None
        os.close(self.write_fd)
        os.close(self.saved_fd)
        self.saved_fd = self.write_fd = -1

    def _read(self, read_fd: int) -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            for raw in pipe:
                # Writes of several threads interleave: a marker may end a line another thread had begun.
                text, marker, token = raw.partition(MARKER)
                if text:
                    self._offer(text if marker else raw)
                if marker:
                    if token.strip() == STOP:
                        return
                    self._reached(int(token))

    def _offer(self, raw: bytes) -> None:
        with self.lock:
            listeners = self.listeners[::-1]
        for listener in listeners:
            try:
                if listener(raw):
                    return
            except Exception:  # noqa: BLE001  (a listener's bug must not stop the reader: the line is passed on)
                break
        self.pass_on(raw)

    def _reached(self, token: int) -> None:
        with self.lock:
            done, on_reached = self.markers.pop(token, (None, None))
        if on_reached is not None:
            on_reached()
        if done is not None:
            done.set()

    def pass_on(self, raw: bytes) -> None:
        os.write(self.saved_fd if self.saved_fd >= 0 else 2, raw)

    def sync(self, on_reached: Callable[[], None] | None = None, wait: bool = True) -> None:
        done = threading.Event()
        with self.lock:
            self.next_token += 1
            token = self.next_token
            self.markers[token] = (done, on_reached)
        os.write(self.write_fd, MARKER + b"%d\n" % token)
        if wait:
            done.wait(MARKER_WAIT)


_capture = _Capture()


def capturing() -> bool:
    """Tell whether descriptor 2 is captured now.

    Returns:
        True while someone listens.
    """
    return _capture.shared.installed


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Offer each line written on descriptor 2 within to a listener (after any listener added later).

    Args:
        listener: called on the reader thread with each line as bytes; returns True when it takes the
            line, False to leave it to earlier listeners and then the real standard error.

    Yields:
        Nothing. On leaving, every line written within has been offered.
    """
    with _capture.shared.held():
        sys.stderr.flush()
        _capture.sync()  # what was written before is offered to the listeners there were, not to this one
        with _capture.lock:
            _capture.listeners.append(listener)
        try:
            yield
        finally:
            sys.stderr.flush()
            _capture.sync()
            with _capture.lock:
                _capture.listeners.remove(listener)


def sync(on_reached: Callable[[], None] | None = None) -> None:
    """Return once every line written on descriptor 2 so far has been offered to the listeners.

    Args:
        on_reached: called on the reader thread at that point, before any later line is offered.
    """
    if capturing():
        _capture.sync(on_reached)
    elif on_reached is not None:
        on_reached()


def mark(on_reached: Callable[[], None]) -> None:
    """Have a call made on the reader thread once every line written so far has been offered; do not wait.

    Args:
        on_reached: called before any line written after this call is offered.
    """
    if capturing():
        _capture.sync(on_reached, wait=False)
    else:
        on_reached()


def pass_on(raw: bytes) -> None:
    """Write a line on the real standard error, as if no one had listened.

    Args:
        raw: The line as bytes, with its line break.
    """
    _capture.pass_on(raw)


def is_note(line: str, notes: Sequence[str | re.Pattern[str]]) -> bool:
    """Tell whether a line is one of the notes to drop.

    Args:
        line: The line, without its line break.
        notes: Whole lines, or patterns a whole line must match.

    Returns:
        True when the line equals a string note or fully matches a pattern.
    """
    return any(line == note if isinstance(note, str) else note.fullmatch(line) for note in notes)


@contextmanager
def native_stderr_without(notes: Sequence[str | re.Pattern[str]]) -> Iterator[None]:
    """Drop the notes' lines written on descriptor 2 within; every other line goes on to standard error.

    Args:
        notes: whole lines, or patterns a whole line must match.

    Yields:
        Nothing.
    """

    def drop_note(raw: bytes) -> bool:
        return is_note(raw.decode(errors="replace").rstrip("\r\n"), notes)

    with listening(drop_note):
        yield


@contextmanager
def native_stderr_discarded() -> Iterator[None]:
    """Drop whatever is written on descriptor 2 within (what other listeners, added later, take aside).

    Yields:
        Nothing.
    """
    with listening(lambda raw: True):
        yield
