"""The `xscan` Typer application, its console helpers, and the one place that maps errors to exit codes."""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

from xscan.about import DISCLAIMER, __version__
from xscan.errors import EXIT_FATAL, EXIT_INTERRUPTED, EXIT_SOFTWARE, EXIT_TERMINATED, EXIT_USAGE, XscanError

if TYPE_CHECKING:
    from xscan.scoring.runlog import RunLog

app = typer.Typer(
    help=f"Score folders of chest X-rays for pneumonia, offline, on a CPU.\n\n{DISCLAIMER}",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
err = Console(stderr=True)
# --debug of the command running (xscan.cli.options.debug_option sets it): `exit_codes` lets a bug's traceback through.
DEBUG: ContextVar[bool] = ContextVar("xscan_debug", default=False)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xscan {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Score folders of chest X-rays for pneumonia, offline, on a CPU."""
    # The process is the command's own from here: TensorFlow's start-up chatter (train, explain) is not for users.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def say(message: str) -> None:
    """One message on standard error, one line: paths are neither wrapped nor read as markup."""
    err.print(message, markup=False, highlight=False, soft_wrap=True)


def fail(message: str, code: int) -> typer.Exit:
    """Print MESSAGE as an error and return the exit to raise."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)  # a message may hold [brackets]
    return typer.Exit(code)


class Terminated(BaseException):
    """SIGTERM arrived: unwinds a run as Ctrl-C does (BaseException, so no handler of errors takes it)."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While a long run works, SIGTERM (a service stop, `timeout`, cron's kill) ends it cleanly with exit 143."""

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def exit_codes(debug: bool | None = None, log: RunLog | None = None, resume_hint: str = "") -> Iterator[None]:
    """The one place an error becomes a message and an exit code, for every command.

    An XscanError exits with its own code; Ctrl-C with 130 and SIGTERM (inside `sigterm_raises`)
    with 143; a MemoryError with 3 (xscan could not do it); anything else is unexpected, a bug:
    exit 70 (EXIT_SOFTWARE), with its traceback too under DEBUG (default: the command's --debug). LOG,
    when given, gets a line for each. RESUME_HINT follows the interrupted and terminated messages.
    """
    debug = DEBUG.get() if debug is None else debug
    hint = f"; {resume_hint}" if resume_hint else ""
    try:
        yield
    except typer.Exit:
        raise
    except XscanError as stop:
        _log(log, "fatal" if stop.exit_code == EXIT_FATAL else "usage-error", f"{stop} (exit {stop.exit_code})")
        raise fail(str(stop), stop.exit_code) from None
    except KeyboardInterrupt:
        _log(log, "fatal", f"interrupted (exit {EXIT_INTERRUPTED})")
        raise fail(f"interrupted{hint}", EXIT_INTERRUPTED) from None
    except Terminated:
        _log(log, "fatal", f"terminated by SIGTERM (exit {EXIT_TERMINATED})")
        raise fail(f"terminated (SIGTERM){hint}", EXIT_TERMINATED) from None
    except MemoryError:
        _traceback(debug)
        _log(log, "fatal", f"out of memory (MemoryError) (exit {EXIT_FATAL})")
        raise fail("out of memory (MemoryError): free memory, or use fewer --workers", EXIT_FATAL) from None
    except Exception as error:
        _traceback(debug)
        _log(log, "fatal", f"unexpected {type(error).__name__}: {error} (exit {EXIT_SOFTWARE})")
        raise fail(
            f"unexpected {type(error).__name__}: {error} (a bug in xscan: --debug shows the traceback)", EXIT_SOFTWARE
        ) from None


def _traceback(debug: bool) -> None:
    """With --debug, the traceback of the exception being handled, on standard error; the exit code stays the same."""
    if debug:
        traceback.print_exc()


def _log(log: RunLog | None, kind: str, message: str) -> None:
    if log is not None:
        log.line(kind, message)


def open_log(path: Path | None) -> RunLog:
    """The run log of --log-file (none without one); a file that cannot be opened is a usage error."""
    from xscan.scoring.runlog import RunLog

    try:
        return RunLog(path)
    except OSError as error:
        raise fail(f"cannot open log file {path}: {error.strerror or error}", EXIT_USAGE) from None
