"""`xscan score`: options, the run's progress and summary on standard error, the run log.

The work is `score_folder`'s.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from xscan.about import DISCLAIMER
from xscan.cli.app import err, exit_codes, open_log, say, sigterm_raises
from xscan.errors import OptionError
from xscan.scoring.options import DicomOptions, ScoreOptions

if TYPE_CHECKING:
    from xscan.input.file_warnings import FileWarning
    from xscan.scoring.results import Row
    from xscan.scoring.run import Event, ScoreSummary
    from xscan.scoring.runlog import RunLog

SCORE_DEFAULTS = ScoreOptions()  # `xscan score`'s defaults are the library's


def score(
    folder: Path = typer.Argument(..., help="Folder of scans, searched recursively (JPEG, PNG, TIFF, BMP, DICOM)."),
    output: str = typer.Option(
        ..., "-o", "--output", help="Results CSV to write or resume; '-' writes to standard output."
    ),
    batch_size: int = typer.Option(SCORE_DEFAULTS.batch_size, min=1, help="Images per model call."),
    threshold: float = typer.Option(None, min=0.0, max=1.0, help="Decision threshold; default: the model card's."),
    workers: int = typer.Option(
        SCORE_DEFAULTS.workers,
        min=0,
        help="Decoding threads; 0 means one per CPU this process may "
        "use (its CPU affinity, and a cgroup CPU quota where one is set).",
    ),
    weights: Path = typer.Option(None, help="Weights folder; default: the bundled model."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start the results file afresh instead of resuming it."),
    wait: bool = typer.Option(
        SCORE_DEFAULTS.wait,
        "--wait",
        help="If another xscan score is writing the same results file, "
        "wait for it to finish instead of exiting 2 at once.",
    ),
    log_file: Path = typer.Option(
        None,
        "--log-file",
        help="Append a line per failed file, per warning (with the file's path) and a summary per run to this file.",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Print nothing but usage and fatal errors (warnings go to the log file only)."
    ),
    dicom_filter: bool = typer.Option(
        SCORE_DEFAULTS.dicom.frontal_only,
        "--dicom-filter/--no-dicom-filter",
        help="Skip DICOMs that are not frontal radiographs (Modality not CR/DX/DR/RG, or a lateral view), "
        "with the reason in the error column; --no-dicom-filter scores them anyway.",
    ),
    dicom_tags: str = typer.Option(
        "",
        "--dicom-tags",
        metavar="KEYWORDS",
        help="Comma-separated DICOM keywords added as extra columns after the standard ones, e.g. "
        "AccessionNumber,SOPInstanceUID. Off by default: the CSV carries no patient identifiers.",
    ),
    labels: bool = typer.Option(
        False,
        "--labels",
        help="Then print the report, ground truth from NORMAL / PNEUMONIA folder names (to standard error with -o -).",
    ),
    scope_check: bool = typer.Option(
        SCORE_DEFAULTS.scope_check,
        "--scope-check/--no-scope-check",
        help="Label scans the model was not built for (not a chest radiograph, rotated or inverted, outside the "
        "training population) OUT_OF_SCOPE, with the reason in the scope column; --no-scope-check is for research "
        "use only.",
    ),
    calibration: Path = typer.Option(
        None,
        "--calibration",
        exists=True,
        dir_okay=False,
        metavar="SITE.json",
        help="Your site's threshold and calibration, from xscan calibrate; the model column "
        "becomes <model id>+<8 hex of the file's sha256>.",
    ),
    ray: bool = typer.Option(
        SCORE_DEFAULTS.ray,
        "--ray",
        help="Decode and score on a Ray cluster (needs xscan[ray]): the one "
        "named by RAY_ADDRESS, else the one running on this machine, else a new one on this machine's cores; "
        "this process walks and writes as usual. FOLDER must be readable at the same path on every node; "
        "--workers is then ignored.",
    ),
    ray_address: str = typer.Option(
        SCORE_DEFAULTS.ray_address,
        "--ray-address",
        metavar="ADDRESS",
        help="The Ray cluster to join, e.g. head-node:6379 (implies --ray; overrides RAY_ADDRESS).",
    ),
) -> None:
    """Score every scan below FOLDER and write one CSV row per file.

    Columns: path (as FOLDER was typed), probability (of pneumonia), label, threshold, model,
    error, scope, then the --dicom-tags columns. scope is empty unless the scan is one the
    model was not built for (a photograph, a rotated or inverted film, an adult film): then the
    label is OUT_OF_SCOPE, never NORMAL or PNEUMONIA, and scope gives the reason and the
    check's score; it is not a failure. Rows are written as each batch finishes. A file that
    cannot be scored is a row with a short reason in `error`, and the run goes on. Cells a
    spreadsheet would run as a formula (= + - @ tab CR first) start with a quote. Each file's
    identity as scored, its resolved path, the run and the drift statistics go to the state
    file RESULTS.state.sqlite beside the CSV (SQLite); a results file from an older xscan is
    upgraded, nothing scored again.
    Warnings raised while files are read (pydicom's remarks on odd DICOMs) are printed once per
    kind, with a count, and logged once per file with --log-file.

    Run again with the same -o, the run resumes: rows are matched on the resolved path, so
    ./export and /data/export are one folder. Files scored (or skipped by the DICOM policy)
    before by the same model and threshold, unchanged since, are not read again; new,
    changed and failed ones are scored. The file ends with one row per file, in walk order,
    even after a run was killed. A results file holds one folder's rows: another folder is
    refused (exit 2). --overwrite starts afresh. One run at a time per results file: the lock
    RESULTS.lock beside it; a second run exits 2 at once, or with --wait waits. A file that
    was being decoded when two runs died (the state file's journal) is not opened again.

    \b
    Exit codes:
      0    every file scored, judged out of scope, skipped by the DICOM policy, or
           unchanged since an earlier run (also an empty folder)
      2    usage error: bad option, missing folder, results being written by
           another run, or a results file that is not xscan's, is damaged or
           unreadable, or holds another model's or another folder's rows
      3    fatal, xscan could not do it: weights that do not load, results that
           cannot be written, out of memory
      70   a bug in xscan: an unexpected error (--debug shows its traceback)
      4    finished, but some files could not be read (see the error column)
      130  interrupted (Ctrl-C); run the same command again to resume
      143  terminated (SIGTERM); run the same command again to resume
    (1 is Python's own: a broken installation, before xscan starts.)

    xscan aids a physician; it is not a diagnostic device.

    Example:

        xscan score ./scans -o results.csv --log-file xscan.log

        xscan score ./pacs-export -o results.csv --dicom-tags AccessionNumber,SOPInstanceUID

        RAY_ADDRESS=head-node:6379 xscan score /shared/archive -o results.csv --ray
    """
    from xscan.input.dicom.tags import parse_tag_names
    from xscan.scoring.run import score_folder

    log = open_log(log_file)
    # Rows are kept only for a report on standard output, which cannot be read back.
    view = ScoreView(log, quiet, keep_rows=labels and output == "-")
    with log, view, sigterm_raises(), exit_codes(log=log, resume_hint="run the same command again to resume"):
        try:
            tags = parse_tag_names(dicom_tags)
        except OptionError as error:
            raise OptionError(f"--dicom-tags: {error}") from None
        options = ScoreOptions(
            batch_size=batch_size,
            threshold=threshold,
            workers=workers,
            weights=weights,
            overwrite=overwrite,
            wait=wait,
            dicom=DicomOptions(frontal_only=dicom_filter, tags=tags),
            scope_check=scope_check,
            calibration=calibration,
            ray=ray or ray_address is not None,
            ray_address=ray_address,
        )
        summary = score_folder(folder, output, options, on_event=view)
        view.finished(summary)
    if labels:
        with exit_codes():
            report_after_scoring(output, view.rows)
    raise typer.Exit(summary.exit_code)


class ScoreView:
    """What `xscan score` shows of a run: messages and a progress bar on stderr, lines in the log file."""

    def __init__(self, log: RunLog, quiet: bool, keep_rows: bool) -> None:
        """Show nothing yet.

        Args:
            log: The run log (--log-file) every message is written to.
            quiet: Whether to print nothing but usage and fatal errors.
            keep_rows: Whether to keep the rows written, for the report --labels prints after scoring.
        """
        self._log = log
        self._quiet = quiet
        self._keep_rows = keep_rows
        self._progress: Any = None
        self.rows: list[Row] = []
        self._warnings: list[FileWarning] = []

    def __call__(self, event: Event) -> None:
        """Show one event of the run: a message, a log line, or the progress bar's start or step.

        Args:
            event: What the run just did.
        """
        from tqdm import tqdm

        from xscan.scoring.run import Notice, NotScanned, Planned, Repaired, RowsWritten, Waiting, Warned

        if isinstance(event, Warned):
            warning = event.warning
            self._warnings.append(warning)
            where = "the run" if warning.path is None else warning.path
            self._log.line("warning", f"{where}: {warning.category} at {warning.origin}: {warning.message}")
        elif isinstance(event, Notice):
            self._note("warning", event.message)
        elif isinstance(event, NotScanned):
            self._note("not-scanned", f"{event.path}: {event.reason}")
        elif isinstance(event, Waiting):
            self._note("waiting", f"another xscan score holds {event.lock}; waiting for it to finish")
        elif isinstance(event, Repaired):
            self._note("repaired", f"{event.output}: dropped a torn last line left by an interrupted run")
        elif isinstance(event, Planned):
            self._progress = tqdm(
                total=event.to_score, unit="scan", file=sys.stderr, disable=self._quiet or not sys.stderr.isatty()
            )
        elif isinstance(event, RowsWritten):
            for row in event.rows:
                if row.error:
                    self._log.line("error", f"{row.path}: {row.error}")
            if self._keep_rows:
                self.rows.extend(event.rows)
            self._progress.update(len(event.rows))

    def finished(self, summary: ScoreSummary) -> None:
        """Close the progress bar, log the summary and print it with one line per kind of warning.

        Args:
            summary: The finished run's counts.
        """
        from xscan.input.file_warnings import tally
        from xscan.input.formats import IMAGE_EXTENSIONS

        self.close()
        self._log.summary(summary)
        if self._quiet:
            return
        for kind in tally(self._warnings):  # one line per kind of warning, not per file: --log-file names the files
            times = "once" if kind.count == 1 else f"{kind.count} times"
            say(f"warning, {times} ({kind.category} at {kind.origin}): {kind.first_message}")
        if not summary.found:
            say(f"no scans found in {summary.folder} (looked for {' '.join(sorted(IMAGE_EXTENSIONS))})")
        scope = f" ({summary.out_of_scope} out of scope)" if summary.out_of_scope else ""
        line = (
            f"scored {summary.scored}{scope}, failed {summary.failed} in {summary.seconds:.1f} s "
            f"({summary.rate:.1f} images/s); "
            f"{summary.unchanged} unchanged, not read again"
        )
        say(line + (f"; {summary.skipped} skipped by the DICOM policy" if summary.skipped else ""))
        if summary.failed:
            say(f"{summary.failed} file(s) could not be scored: see the error column of {summary.output}")
        if summary.drift is not None:
            say(summary.drift.summary() + ("; details: xscan drift " + summary.output if summary.output != "-" else ""))

    def _note(self, kind: str, message: str) -> None:
        self._log.line(kind, message)
        if not self._quiet:
            say(f"{kind}: {message}")

    def close(self) -> None:
        """Close the progress bar, if one was started; closing twice is harmless."""
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def __enter__(self) -> ScoreView:
        """Return the view itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the progress bar, so an interrupted run leaves the terminal clean."""
        self.close()


def report_after_scoring(output: str, streamed: list[Row]) -> None:
    """Print the report of --labels once scoring is done, then the disclaimer.

    Args:
        output: The results CSV's path, or "-" for standard output (the report then goes to standard error).
        streamed: The rows scored, used only when the results went to standard output and cannot be read back.
    """
    from xscan.reporting.labels import FolderLabels
    from xscan.reporting.report import build_report, report_from_csv
    from xscan.reporting.view import print_report

    if output == "-":
        result = build_report(streamed, FolderLabels(), source="standard output")
    else:  # read back, so the report is exactly what `xscan report` says of the file
        result = report_from_csv(Path(output), FolderLabels())
    console = err if output == "-" else Console()
    print_report(result, console)
    console.print(DISCLAIMER)
