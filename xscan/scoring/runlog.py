r"""The plain-text run log (`score --log-file`): a line per problem and a summary line per run, appended.

Each line is `TIMESTAMP KIND MESSAGE`, the timestamp local ISO 8601 with its UTC offset; KIND is
`error` (a file not scored, with the reason), `warning` (a warning raised while a file was
read: its path, the warning's category and origin, its message), `not-scanned` (a path the walk
passed over), `waiting` (for another run's lock), `repaired`, `usage-error`, `fatal`, `run`
(the summary), or `drift` (after the summary of a run that scored at least 100 scans: the drift
check's verdict, xscan.stats.drift). Line breaks inside file names are written as `\n` so one line stays one
entry.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from xscan.scoring.run import ScoreSummary


class RunLog:
    """The run log, appended to; with no path, it logs nothing."""

    def __init__(self, path: Path | None) -> None:
        """Open the log for appending.

        Args:
            path: The log file; None logs nothing.
        """
        # backslashreplace: a file name that is not valid UTF-8 is logged as escapes, never a crash.
        self._stream: IO[str] | None = (
            open(path, "a", encoding="utf-8", errors="backslashreplace", buffering=1) if path else None
        )

    def line(self, kind: str, message: str) -> None:
        """Append one entry, stamped with the local time.

        Args:
            kind: What the entry is (`error`, `warning`, `run`, ...: see the module's docstring).
            message: The entry; its line breaks are written as escapes.
        """
        if self._stream is None:
            return
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        self._stream.write(f"{stamp} {kind} {_one_line(message)}\n")

    def summary(self, run: ScoreSummary) -> None:
        """Append a run's summary line, and its drift verdict when it has one.

        Args:
            run: The finished run.
        """
        self.line(
            "run",
            f"folder={_one_line(str(run.folder))} scored={run.scored} unchanged={run.unchanged} "
            f"skipped={run.skipped} failed={run.failed} seconds={run.seconds:.1f} workers={run.workers} "
            f"exit={run.exit_code}",
        )
        if run.drift is not None:
            self.line("drift", run.drift.summary())

    def close(self) -> None:
        """Close the log file, if one is open."""
        if self._stream is not None:
            self._stream.close()

    def __enter__(self) -> RunLog:
        """Use the log for a block.

        Returns:
            The log itself.
        """
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the log on leaving the block."""
        self.close()


def _one_line(text: str) -> str:
    return text.replace("\n", "\\n").replace("\r", "\\r")
