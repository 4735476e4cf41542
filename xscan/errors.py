"""xscan's one family of exceptions, and the exit codes the command line maps them to.

Every error xscan raises on purpose is an `XscanError` whose `exit_code` says how a command ends
when it meets one; `xscan.cli` maps them in one place. Errors a caller may already catch as
`ValueError` keep that as a second base.
"""

from __future__ import annotations

# Documented in `xscan score --help`, README.md and docs/reliability.md. Not 1: Python itself exits 1
# when the install is broken (an ImportError before any of xscan's code runs), and that must alarm.
EXIT_OK = 0  # every file scored, skipped by policy, or unchanged since an earlier run
EXIT_USAGE = 2  # bad option, missing folder, a results file that must not be written to, a results file in use
EXIT_FATAL = 3  # xscan could not do it: delivery, output that cannot be written, damaged weights, out of memory
EXIT_SOME_FAILED = 4  # the run finished, but some files could not be read (rows with an error)
EXIT_DRIFT = 5  # `xscan drift`: the scans are unlike the model card's reference (not an error: a finding)
# A bug: an exception xscan did not raise on purpose. 70 is EX_SOFTWARE of BSD's sysexits.h ("an
# internal software error has been detected"), the code other Unix tools use for it; apart from 3 so
# that a monitor tells "fix the site" (3) from "report a bug" (70); below 128, where signals are.
EXIT_SOFTWARE = 70
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT (128 + 2); the next run resumes
EXIT_TERMINATED = 143  # the shell's convention for SIGTERM (128 + 15); the next run resumes


class XscanError(Exception):
    """The base of every error xscan raises on purpose; `exit_code` is what a command exits with on it."""

    exit_code = EXIT_FATAL


class ScanError(XscanError):
    """A file that cannot be scored; the message is the one-line reason written to its row (never an exit)."""


class RunError(XscanError):
    """A reason a run cannot start or go on (fatal unless a subclass says otherwise)."""


class UsageError(RunError):
    """The run was asked for what it cannot do: a missing folder, a bad option, a file that is not to be touched."""

    exit_code = EXIT_USAGE


class OptionError(UsageError, ValueError):
    """An option value out of its range or unknown (a bad --dicom-tags keyword, a batch size of 0)."""


class ResultsFileError(UsageError):
    """A results file this run must not write to: not xscan's, damaged, unreadable, from another model or folder."""


class ResultsLockedError(UsageError):
    """Another run holds the lock of the results file (and this one was not asked to wait)."""


class ResultsWriteError(RunError):
    """Rows could not be written mid-run (a full disk, a vanished folder)."""


class WeightsError(RunError):
    """The weights folder is missing, incomplete or does not match its model card."""


class LabelsError(UsageError, ValueError):
    """A labels file that cannot be read as `path,label` with known labels; the message says where."""


class TrainingDataError(UsageError, ValueError):
    """A training folder or labels file that cannot give a training set; the message says what is missing."""


# The longest error or scope cell a row holds: a damaged file's header can make a message of kilobytes.
CELL_LIMIT = 300


def one_line(error: BaseException, limit: int = 200) -> str:
    """Give an exception's message on one printable line: fit for a CSV cell or a log line.

    Args:
        error: The exception.
        limit: The most characters.

    Returns:
        The message, made printable and cut to `limit`; the exception's type name when it has none.
    """
    return printable(str(error), limit) or type(error).__name__


def printable(text: str, limit: int = CELL_LIMIT) -> str:
    r"""Give text as one printable line, however damaged the file it came from.

    Runs of whitespace (line breaks included) become one space; any other character Python does not
    print (control characters, raw bytes read as Latin-1, undecodable bytes kept as surrogates) is
    written as its escape, `\x00`, `\x9d`, `\udc80`.

    Args:
        text: The text.
        limit: The most characters; longer text is cut and ends with "...".

    Returns:
        The printable line.
    """
    joined = " ".join(text.split())
    cleaned = (
        joined
        if joined.isprintable()
        else "".join(char if char.isprintable() else ascii(char)[1:-1] for char in joined)
    )
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."
