"""Exceptions shared by several modules, and the exit codes `xscan score` maps them to."""

from __future__ import annotations

# Documented in `xscan score --help`, README.md and docs/reliability.md.
EXIT_OK = 0  # every file scored (or unchanged since an earlier run)
EXIT_SOME_FAILED = 1  # the run finished, but some rows have an error
EXIT_USAGE = 2  # bad option, missing folder, a results file that must not be written to
EXIT_FATAL = 3  # weights that do not load, results that cannot be written, an unexpected error
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT; the next run resumes


class ScanError(Exception):
    """A file that cannot be scored; the message is the one-line reason written to its row."""


class RunError(Exception):
    """A reason a scoring run cannot start or go on; `exit_code` is what `xscan score` exits with."""

    exit_code = EXIT_FATAL


class UsageError(RunError):
    """The run was asked for something it cannot do: a missing folder, a results file that is not to be touched."""

    exit_code = EXIT_USAGE


class ResultsFileError(UsageError):
    """A results file this run must not write to: not xscan's, damaged, unreadable, or from another model."""


class ResultsWriteError(RunError):
    """Rows could not be written mid-run (a full disk, a vanished folder)."""


class WeightsError(RunError):
    """The weights folder is missing, incomplete or does not match its model card."""


def one_line(error: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, at most LIMIT characters: fit for a CSV cell or a log line."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
