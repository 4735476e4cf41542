"""What native decoders write on the process's standard error, kept with the file being decoded instead of printed.

libjpeg ("Corrupt JPEG data: premature end of data segment"), libpng ("libpng error: IHDR: CRC
error"), both inside OpenCV, and a Rust decoder's panic message write straight to file descriptor 2,
below Python. A run (`native_messages_kept`) listens to that descriptor through the one capture
(`native_stderr`) for its duration.

Decoding runs on several threads and a descriptor is process-wide, so a line cannot say whose it
is. Each decode (`noting`) is in flight from one marker in the pipe to another, and waits for the
capture's reader to reach the second: every line its decoder wrote came between the two. A line
read while one decode alone was in flight is that file's; one read while several were is decoded
again, alone (other decodes wait for it), so that what it writes is its own (and claims the line it
is part of: libpng writes a message and its line break apart, so two decoders' messages can share a
line). A line no decode claims (a library's note while the model runs) goes on to the real
standard error, as it would have. Claimed lines become warnings of the file (`file_warnings`), so
`--quiet` prints none and the log names each file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from xscan.errors import printable
from xscan.input import native_stderr
from xscan.input.file_warnings import FileWarning, hand_over

T = TypeVar("T")
CATEGORY = "native"  # a FileWarning's category for a line a native decoder wrote


@dataclass
class _Line:
    raw: bytes
    listeners: int  # decodes in flight when it was read, not yet settled
    claimed: bool = False


def _text(raw: bytes) -> str:
    return printable(raw.decode("utf-8", "backslashreplace"))


@dataclass
class _Decode:
    heard: list[tuple[int, str]] = field(default_factory=list)  # (line number, text) read while it was in flight
    shared: bool = False  # another decode was in flight when one of those lines was read


class _Decodes:
    """The decodes in flight and the lines heard while they were, until each of those decodes has settled."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight: dict[int, _Decode] = {}
        self.next_id = 0
        self.lines_read = 0
        self.pending: dict[int, _Line] = {}  # by line number
        self.alone = threading.Condition()  # a decode run again alone waits for the others, and they for it
        self.running = 0
        self.solo = False
        self.kept = 0  # runs inside `native_messages_kept`: without one, a decode's lines are not its own

    def hear(self, raw: bytes) -> bool:
        """The capture's listener: a line read while decodes are in flight is theirs to sort out."""
        with self.lock:
            decodes = list(self.in_flight.values())
            if not decodes:
                return False
            if not raw.strip():
                return True  # the line break a decoder wrote apart from its message
            self.lines_read += 1
            self.pending[self.lines_read] = _Line(raw, len(decodes))
            for decode in decodes:
                decode.heard.append((self.lines_read, _text(raw)))
                decode.shared = decode.shared or len(decodes) > 1
        return True

    def settle(self, heard: list[tuple[int, str]], own: set[str] | None = None) -> None:
        """Sort out a decode's lines: those it wrote (`own`; all of them when it ran alone) are claimed.

        A line that every decode that heard it has settled, and none claimed, was nobody's (a
        library's note): it goes to the real standard error.
        """
        unclaimed = []
        with self.lock:
            for number, text in heard:
                line = self.pending[number]
                # Part of it is enough: libpng writes a message and its line break apart, and another decoder may
                # write between.
                line.claimed = line.claimed or own is None or any(mine in text for mine in own)
                line.listeners -= 1
                if line.listeners == 0:
                    del self.pending[number]
                    if not line.claimed:
                        unclaimed.append(line.raw)
        for raw in unclaimed:
            native_stderr.pass_on(raw)

    def run(self, call: Callable[[], T]) -> tuple[T | None, BaseException | None, _Decode]:
        """Run `call`, giving its result or exception, and what was heard while it ran."""
        with self.lock:
            self.next_id += 1
            token, decode = self.next_id, _Decode()
        # In flight from a marker to a marker: a line written before it started (by anyone) is never its own. Only the
        # second is waited for: the reader reaches the first before anything this decode writes.
        native_stderr.mark(lambda: self._started(token, decode))
        result, error = None, None
        try:
            result = call()
        except BaseException as raised:  # a Rust decoder's panic is a BaseException; raised again by `noting`
            error = raised
        finally:
            native_stderr.sync(on_reached=lambda: self._finished(token))
        return result, error, decode

    def _started(self, token: int, decode: _Decode) -> None:
        with self.lock:
            self.in_flight[token] = decode

    def _finished(self, token: int) -> None:
        with self.lock:
            self.in_flight.pop(token, None)

    @contextmanager
    def decoding(self, alone: bool) -> Iterator[None]:
        """Within, a decode runs among others, or `alone`: none other starts or is still running."""
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


_decodes = _Decodes()


@contextmanager
def native_messages_kept() -> Iterator[None]:
    """Keep what native decoders write on descriptor 2 during `noting` as the decoding thread's warnings.

    Yields:
        Nothing; runs that overlap share the one capture.
    """
    with native_stderr.listening(_decodes.hear):
        with _decodes.lock:
            _decodes.kept += 1
        try:
            yield
        finally:
            with _decodes.lock:
                _decodes.kept -= 1


def noting(origin: str, call: Callable[[], T]) -> T:
    """Run one decode of one file, keeping what its native decoder writes on standard error.

    Args:
        origin: where the lines come from, for the warnings (e.g. "cv2.imdecode (JPEG)").
        call: the decode.

    Returns:
        The decode's result.

    Raises:
        BaseException: What the decode raised, raised again once its lines became the file's warnings.
    """
    if not _decodes.kept:
        return call()
    with _decodes.decoding(alone=False):
        result, error, decode = _decodes.run(call)
    if decode.shared:
        with _decodes.decoding(alone=True):
            result, error, alone = _decodes.run(call)
        _decodes.settle(decode.heard, own={text for _, text in alone.heard})
        decode = alone
    _decodes.settle(decode.heard)
    hand_over(FileWarning(CATEGORY, origin, text) for _, text in decode.heard)
    if error is not None:
        raise error
    return result  # type: ignore[return-value]
