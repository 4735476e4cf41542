"""What native decoders write on the process's standard error, kept with the file being decoded instead of printed.

libjpeg ("Corrupt JPEG data: premature end of data segment"), libpng ("libpng error: IHDR: CRC
error"), both inside OpenCV, and a Rust decoder's panic message write straight to file descriptor 2,
below Python. A run (`native_messages_kept`, entered once however many runs share it) points that
descriptor at a pipe for its duration, while Python's own `sys.stderr` keeps writing to the real
one; a reader thread takes each line from the pipe.

Decoding runs on several threads and a descriptor is process-wide, so a line cannot say whose it
is. Each decode (`noting`) registers while it runs, and afterwards writes a marker into the pipe
and waits for the reader to reach it: every line its decoder wrote came before. A line read while
one decode alone was in flight is that file's; one read while several were is decoded again, alone
(other decodes wait for it), so that what it writes is its own (and claims the line it is part of:
libpng writes a message and its line break apart, so two decoders' messages can share a line). A line no decode claims (a
library's note while the model runs) goes on to the real standard error, as it would have.
Claimed lines become warnings of the file (`file_warnings`), so `--quiet` prints none and the log
names each file.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from xscan.errors import printable
from xscan.input.file_warnings import FileWarning, hand_over

T = TypeVar("T")
CATEGORY = "native"  # a FileWarning's category for a line a native decoder wrote
MARKER = b"\x00xscan-decoded "
# How long a decode waits for the reader to reach its marker; a safeguard only: the reader takes a line in microseconds.
MARKER_WAIT = 10.0


@dataclass
class _Line:
    raw: bytes
    listeners: int  # decodes in flight when it was read, not yet settled
    claimed: bool = False


def _text(raw: bytes) -> str:
    return printable(raw.decode("utf-8", "backslashreplace"))


@dataclass
class _Decode:
    heard: list[tuple[int, str]] = field(
        default_factory=list
    )  # (line number, text) read while this decode was in flight
    shared: bool = False  # another decode was in flight when one of those lines was read
    done: threading.Event = field(default_factory=threading.Event)


class _Capture:
    """Descriptor 2 pointed at a pipe, a reader thread, and the decodes in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.in_flight: dict[int, _Decode] = {}
        self.next_id = 0
        self.lines_read = 0
        self.pending: dict[
            int, _Line
        ] = {}  # lines heard while decodes were in flight, by number, until each of those has settled
        self.alone = threading.Condition()  # a decode run again alone waits for the others, and they for it
        self.running = 0
        self.solo = False
        self.saved_fd = -1
        self.write_fd = -1
        self.reader: threading.Thread | None = None
        self.saved_stderr = None

    def install(self) -> None:
        with self.lock:
            self.users += 1
            if self.users > 1:
                return
            sys.stderr.flush()
            self.saved_fd = os.dup(2)
            read_fd, write_fd = os.pipe()
            os.dup2(write_fd, 2)
            os.close(write_fd)
            self.write_fd = 2
            self.saved_stderr = sys.stderr
            sys.stderr = open(
                os.dup(self.saved_fd),
                "w",
                buffering=1,
                encoding=sys.stderr.encoding,  # noqa: SIM115
                errors=sys.stderr.errors,
            )
            self.reader = threading.Thread(target=self._read, args=(read_fd,), name="xscan-native-stderr", daemon=True)
            self.reader.start()

    def uninstall(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users > 0:
                return
            replacement, sys.stderr = sys.stderr, self.saved_stderr
            replacement.close()
            os.dup2(self.saved_fd, 2)  # the pipe's last writer goes: the reader sees its end
            os.close(self.saved_fd)
        if self.reader is not None:
            self.reader.join()
            self.reader = None

    @property
    def installed(self) -> bool:
        return self.users > 0

    def _read(self, read_fd: int) -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            for raw in pipe:
                # Writes of several threads interleave: a marker may end a line another decoder had begun.
                text, marker, token = raw.partition(MARKER)
                if text.strip():
                    self._heard(text if marker else raw)
                if marker:
                    with self.lock:
                        decode = self.in_flight.pop(int(token), None)
                    if decode is not None:
                        decode.done.set()

    def _heard(self, raw: bytes) -> None:
        with self.lock:
            self.lines_read += 1
            decodes = list(self.in_flight.values())
            if decodes:
                self.pending[self.lines_read] = _Line(raw, len(decodes))
            for decode in decodes:
                decode.heard.append((self.lines_read, _text(raw)))
                decode.shared = decode.shared or len(decodes) > 1
        if not decodes:
            os.write(self.saved_fd, raw)

    def settle(self, heard: list[tuple[int, str]], own: set[str] | None = None) -> None:
        """A decode's lines, sorted out: those it wrote (OWN; all of them when it ran alone) are claimed. A line every
        decode that heard it has settled, and none claimed, was nobody's (a library's note): it goes to the real standard error."""
        unclaimed = []
        with self.lock:
            for number, text in heard:
                line = self.pending[number]
                # Part of it is enough: libpng writes a message and its line break apart, and another decoder may write between.
                line.claimed = line.claimed or own is None or any(mine in text for mine in own)
                line.listeners -= 1
                if line.listeners == 0:
                    del self.pending[number]
                    if not line.claimed:
                        unclaimed.append(line.raw)
        for raw in unclaimed:
            os.write(self.saved_fd, raw)

    def run(self, call: Callable[[], T]) -> tuple[T | None, BaseException | None, _Decode]:
        """CALL's result or exception, and what was heard while it ran."""
        with self.lock:
            self.next_id += 1
            token, decode = self.next_id, _Decode()
            self.in_flight[token] = decode
        result, error = None, None
        try:
            result = call()
        except BaseException as raised:  # a Rust decoder's panic is a BaseException; raised again by `noting`
            error = raised
        finally:
            os.write(self.write_fd, MARKER + b"%d\n" % token)
            decode.done.wait(MARKER_WAIT)
        return result, error, decode

    @contextmanager
    def decoding(self, alone: bool) -> Iterator[None]:
        """Within, a decode runs among others, or ALONE: none other starts or is still running."""
        with self.alone:
            self.alone.wait_for(lambda: not self.solo and (not alone or self.running == 0))
            if alone:
                self.solo = True
            self.running += 1
        try:
            yield
        finally:
            with self.alone:
                self.running -= 1
                self.solo = self.solo and not alone
                self.alone.notify_all()


_capture = _Capture()


@contextmanager
def native_messages_kept() -> Iterator[None]:
    """While open, what native decoders write on descriptor 2 during `noting` goes to the decoding thread's warnings."""
    _capture.install()
    try:
        yield
    finally:
        _capture.uninstall()


def noting(origin: str, call: Callable[[], T]) -> T:
    """CALL (one decode of one file); what its native decoder writes on standard error becomes the file's warnings, from ORIGIN."""
    if not _capture.installed:
        return call()
    with _capture.decoding(alone=False):
        result, error, decode = _capture.run(call)
    if decode.shared:
        with _capture.decoding(alone=True):
            result, error, alone = _capture.run(call)
        _capture.settle(decode.heard, own={text for _, text in alone.heard})
        decode = alone
    _capture.settle(decode.heard)
    hand_over(FileWarning(CATEGORY, origin, text) for _, text in decode.heard)
    if error is not None:
        raise error
    return result  # type: ignore[return-value]
