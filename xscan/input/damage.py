"""Telling a damaged file from a bug in xscan: where an exception was raised decides, not its type alone.

pydicom, its decoder plugins, OpenCV and numpy raise AttributeError, TypeError, KeyError and their
own exception types on malformed data ("Missing required element: (0028,0101) 'Bits Stored'").
The same types raised by xscan's own code are bugs, which must stop the run (exit 3) rather than
fill a night with error rows. So an exception raised while a file is read becomes that file's
ScanError (`decoding`) when it comes from a decoder: the innermost frame of its traceback that is
not Python's standard library (enum, struct, re, ... called by pydicom) lies in a decoder package,
or its class is one a decoder package defines (cv2.error, numpy's UFuncTypeError, zlib.error),
raised from native code called on the file's data. Anything else is xscan's, and propagates;
a MemoryError is no property of one file and always propagates.

Values xscan itself reads from a header (Rows, the transfer syntax) are checked where they are
read (`xscan.input.dicom.image`), so that a damaged value is a ScanError, not a TypeError in xscan's
code.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from xscan.errors import ScanError, one_line

# Top-level packages whose code parses or decodes a file's bytes (or works on the decoded array) for xscan.
DECODER_PACKAGES = frozenset({"pydicom", "pylibjpeg", "libjpeg", "openjpeg", "rle", "cv2", "numpy", "zlib", "PIL"})


def raised_in_decoder(error: BaseException) -> bool:
    """Tell whether an exception comes from a decoder's code or type, not from xscan's own.

    Args:
        error: The exception raised while a file was read.

    Returns:
        True when its class is defined in a decoder package, or its innermost frame outside the
        standard library lies in one (see the module's docstring).
    """
    if _package(type(error).__module__) in DECODER_PACKAGES:
        return True
    frame = _innermost_own_frame(error.__traceback__)
    return frame is not None and _package(frame.tb_frame.f_globals.get("__name__", "")) in DECODER_PACKAGES


def _innermost_own_frame(trace: TracebackType | None) -> TracebackType | None:
    """The innermost traceback entry whose code is not the standard library's."""
    found = None
    while trace is not None:
        if _package(trace.tb_frame.f_globals.get("__name__", "")) not in sys.stdlib_module_names:
            found = trace
        trace = trace.tb_next
    return found


def _package(module: str) -> str:
    return module.partition(".")[0]


@contextmanager
def decoding(what: str, known: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Turn an exception raised within that comes from a decoder into the file's ScanError.

    Args:
        what: What was being done, leading the ScanError's message (what the error says follows, on
            one line).
        known: Exception types that are a damaged file's wherever they are raised.

    Yields:
        Nothing; the body runs inside.

    Raises:
        ScanError: For an exception from a decoder or of a `known` type.
    """
    try:
        yield
    except (ScanError, MemoryError):
        raise
    except Exception as error:
        if not (isinstance(error, known) or raised_in_decoder(error)):
            raise
        raise ScanError(f"{what}: {describe(error)}") from None


def describe(error: BaseException) -> str:
    """Say what an exception says, on one line.

    Args:
        error: The exception.

    Returns:
        Its message on one line, led by its type where the message alone would not say what failed
        (a KeyError's).
    """
    message = one_line(error)
    name = type(error).__name__
    return f"{name}: {message}" if isinstance(error, KeyError) and message != name else message
