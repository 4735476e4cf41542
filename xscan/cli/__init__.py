"""The `xscan` command line: parses options, calls the library, prints; it computes nothing itself."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from xscan import __version__
from xscan.errors import EXIT_FATAL, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE
from xscan.scoring.options import DicomOptions, ScoreOptions

if TYPE_CHECKING:
    from xscan.explain.gradcam import Explainer
    from xscan.input.file_warnings import FileWarning
    from xscan.model.site_calibration import SiteCalibration
    from xscan.reporting.labels import GroundTruth
    from xscan.reporting.report import Report
    from xscan.scoring.results import Row
    from xscan.scoring.run import Event, ScoreSummary
    from xscan.scoring.runlog import RunLog
    from xscan.training.train import TrainConfig

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow start-up chatter is not for users

DISCLAIMER = "xscan aids a physician; it is not a diagnostic device."
app = typer.Typer(
    help=f"Score folders of chest X-rays for pneumonia, offline, on a CPU.\n\n{DISCLAIMER}",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
err = Console(stderr=True)
SCORE_DEFAULTS = ScoreOptions()  # `xscan score`'s defaults are the library's


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xscan {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Score folders of chest X-rays for pneumonia, offline, on a CPU."""


class _RecipeDefault:
    """An option's default read from the training recipe (TrainConfig, and ModelConfig inside it).

    Click calls it for the value and shows str() of it in --help, so xscan.training.train, which imports
    scikit-learn, is imported only by `xscan train` and `xscan train --help`.
    """

    def __init__(self, read: Callable[[TrainConfig], Any]) -> None:
        self._read = read

    def __call__(self) -> Any:
        from xscan.training.train import TrainConfig

        return self._read(TrainConfig())

    def __str__(self) -> str:
        return str(self())


@app.command()
def train(
    data_dir: Path = typer.Argument(..., help="Folder with one sub-folder per class: NORMAL and PNEUMONIA."),
    out: Path = typer.Option(Path("weights"), "--out", help="Folder to write the weights and model card into."),
    epochs: int = typer.Option(default_factory=_RecipeDefault(lambda c: c.epochs),
                               help="Most epochs to train; early stopping on validation AUC may stop sooner."),
    image_size: int = typer.Option(default_factory=_RecipeDefault(lambda c: c.model.image_size), help="Square model input side in pixels."),
    members: int = typer.Option(default_factory=_RecipeDefault(lambda c: c.model.members), min=1,
                                help="Networks trained side by side and averaged (an ensemble)."),
    batch_size: int = typer.Option(default_factory=_RecipeDefault(lambda c: c.batch_size), help="Images per training step."),
    val_fraction: float = typer.Option(default_factory=_RecipeDefault(lambda c: c.val_fraction),
                                       help="Share of patients held out: half selects epoch, calibration and thresholds, "
                                       "half only reports."),
    seed: int = typer.Option(default_factory=_RecipeDefault(lambda c: c.seed), help="Random seed for the split, augmentation and weights."),
    external: Path = typer.Option(None, "--external", help="A labelled folder (NORMAL / PNEUMONIA) from outside the intended "
                                  "population, e.g. adult films: part teaches the out-of-scope check, part is reported in the card."),
    labels_file: Path = typer.Option(None, "--labels-file", exists=True, dir_okay=False,
                                     help="CSV with columns path,label[,patient], paths relative to DATA_DIR, instead of class "
                                     "folders; the patient column keeps a patient's scans on one side of the split."),
    scope_only: bool = typer.Option(False, "--scope-only", help="Keep the trained model in --out and fit only its "
                                    "out-of-scope check again (on the card's own split), e.g. with --external films of your site."),
) -> None:
    """Train the CNN ensemble on a labelled folder and write weights plus a model card.

    Validation patients are held out whole (no patient on both sides): half of them choose the
    epoch, the calibration (Platt scaling) and the threshold (the highest reaching sensitivity
    0.95), the other half choose nothing and give the card's figures. The patient of a scan is
    its DICOM PatientID, the labels file's patient column, or a Kermany / NIH file-name pattern;
    a scan with none of these is its own patient, and a warning says how many there are. The
    members train side by side and their logits are averaged; a small scope network and feature
    statistics make the out-of-scope check.

    Example:

        xscan train ../shared/data/chest_xray/train --out weights/ --external ../shared/data/nih_adult
    """
    from dataclasses import replace

    from xscan.errors import WeightsError
    from xscan.model.card import WEIGHTS_FILE
    from xscan.training.train import TrainConfig, refit_scope
    from xscan.training.train import train as run_training

    recipe = TrainConfig()
    config = replace(recipe, val_fraction=val_fraction, seed=seed, epochs=epochs, batch_size=batch_size,
                     model=replace(recipe.model, image_size=image_size, members=members))
    # Every option spelled out, so the card's command reproduces the run whatever the defaults become.
    command = shlex.join([
        "xscan", "train", str(data_dir), "--out", str(out), "--epochs", str(epochs), "--image-size", str(image_size),
        "--members", str(members), "--batch-size", str(batch_size), "--val-fraction", str(val_fraction), "--seed", str(seed),
        *(["--external", str(external)] if external else []), *(["--labels-file", str(labels_file)] if labels_file else []),
    ])
    if scope_only:
        command = shlex.join(["xscan", "train", str(data_dir), "--out", str(out), "--scope-only",
                              *(["--external", str(external)] if external else []),
                              *(["--labels-file", str(labels_file)] if labels_file else [])])
    log = lambda line: err.print(line, highlight=False, markup=False)  # noqa: E731
    try:
        if scope_only:
            card = refit_scope(data_dir, out, config, command, log, external=external, labels_file=labels_file)
        else:
            card = run_training(data_dir, out, config, command, log, external=external, labels_file=labels_file)
    except (FileNotFoundError, ValueError, WeightsError) as error:
        raise _fail(str(error), EXIT_USAGE) from None
    err.print(f"wrote {out / WEIGHTS_FILE} and its model card; model id {card.model_id}")


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)  # a message may hold [brackets]
    return typer.Exit(code)


@app.command()
def score(
    folder: Path = typer.Argument(..., help="Folder of scans, searched recursively (JPEG, PNG, TIFF, BMP, DICOM)."),
    output: str = typer.Option(..., "-o", "--output", help="Results CSV to write or resume; '-' writes to standard output."),
    batch_size: int = typer.Option(SCORE_DEFAULTS.batch_size, min=1, help="Images per model call."),
    threshold: float = typer.Option(None, min=0.0, max=1.0, help="Decision threshold; default: the model card's."),
    workers: int = typer.Option(SCORE_DEFAULTS.workers, min=0, help="Decoding threads; 0 means one per CPU this process may "
                                "use (its CPU affinity, and a cgroup CPU quota where one is set)."),
    weights: Path = typer.Option(None, help="Weights folder; default: the bundled model."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start the results file afresh instead of resuming it."),
    wait: bool = typer.Option(SCORE_DEFAULTS.wait, "--wait", help="If another xscan score is writing the same results file, "
                              "wait for it to finish instead of exiting 2 at once."),
    log_file: Path = typer.Option(None, "--log-file", help="Append a line per failed file, per warning (with the file's path) "
                                  "and a summary per run to this file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but usage and fatal errors (warnings go to the log "
                               "file only)."),
    debug: bool = typer.Option(False, "--debug", help="Show the Python traceback of an unexpected error."),
    dicom_filter: bool = typer.Option(
        SCORE_DEFAULTS.dicom.frontal_only, "--dicom-filter/--no-dicom-filter",
        help="Skip DICOMs that are not frontal radiographs (Modality not CR/DX/DR/RG, or a lateral view), with the reason "
        "in the error column; --no-dicom-filter scores them anyway.",
    ),
    dicom_tags: str = typer.Option(
        "", "--dicom-tags", metavar="KEYWORDS",
        help="Comma-separated DICOM keywords added as extra columns after the standard ones, e.g. "
        "AccessionNumber,SOPInstanceUID. Off by default: the CSV carries no patient identifiers.",
    ),
    labels: bool = typer.Option(False, "--labels", help="Then print the report, ground truth from NORMAL / PNEUMONIA "
                                "folder names (to standard error with -o -)."),
    scope_check: bool = typer.Option(
        SCORE_DEFAULTS.scope_check, "--scope-check/--no-scope-check",
        help="Label scans the model was not built for (not a chest radiograph, rotated or inverted, outside the training "
        "population) OUT_OF_SCOPE, with the reason in the scope column; --no-scope-check is for research use only.",
    ),
    calibration: Path = typer.Option(None, "--calibration", exists=True, dir_okay=False, metavar="SITE.json",
                                     help="Your site's threshold and calibration, from xscan calibrate; the model column "
                                     "becomes <model id>+<8 hex of the file's sha256>."),
    ray: bool = typer.Option(SCORE_DEFAULTS.ray, "--ray", help="Decode and score on a Ray cluster (needs xscan[ray]): the one "
                             "named by RAY_ADDRESS, else the one running on this machine, else a new one on this machine's cores; "
                             "this process walks and writes as usual. FOLDER must be readable at the same path on every node; "
                             "--workers is then ignored."),
    ray_address: str = typer.Option(SCORE_DEFAULTS.ray_address, "--ray-address", metavar="ADDRESS", help="The Ray cluster to join, "
                                    "e.g. head-node:6379 (implies --ray; overrides RAY_ADDRESS)."),
) -> None:
    """Score every scan below FOLDER and write one CSV row per file.

    Columns: path (as FOLDER was typed), probability (of pneumonia), label, threshold, model,
    error, then size, mtime_ns, inode and ctime_ns (the file as it was scored) and
    resolved_path (FOLDER's symbolic links resolved). Rows are written as each batch finishes.
    A file that cannot be scored is a row with a short reason in `error`, and the run goes on.
    Cells a spreadsheet would run as a formula (= + - @ tab CR first) start with a quote. The
    last column, scope, is empty unless the scan is one the model was not built for (a
    photograph, a rotated or inverted film, an adult film): then the label is OUT_OF_SCOPE,
    never NORMAL or PNEUMONIA, and scope gives the reason and the check's score; it is not a
    failure.
    Warnings raised while files are read (pydicom's remarks on odd DICOMs) are printed once per
    kind, with a count, and logged once per file with --log-file.

    Run again with the same -o, the run resumes: rows are matched on resolved_path, so
    ./export and /data/export are one folder. Files scored (or skipped by the DICOM policy)
    before by the same model and threshold, unchanged since, are not read again; new,
    changed and failed ones are scored. The file ends with one row per file, in walk order,
    even after a run was killed. A results file holds one folder's rows: another folder is
    refused (exit 2). --overwrite starts afresh. One run at a time per results file: the lock
    RESULTS.lock beside it; a second run exits 2 at once, or with --wait waits. A file that
    was being decoded when two runs died (RESULTS.journal) is not opened again.

    \b
    Exit codes:
      0    every file scored, judged out of scope, skipped by the DICOM policy, or
           unchanged since an earlier run (also an empty folder)
      2    usage error: bad option, missing folder, results being written by
           another run, or a results file that is not xscan's, is damaged or
           unreadable, or holds another model's or another folder's rows
      3    fatal: weights that do not load, results that cannot be written, an
           unexpected error (--debug shows its traceback)
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
    from xscan.errors import RunError
    from xscan.input.dicom.tags import parse_tag_names
    from xscan.scoring.run import score_folder
    from xscan.scoring.runlog import RunLog

    try:
        tags = parse_tag_names(dicom_tags)
    except ValueError as error:
        raise _fail(f"--dicom-tags: {error}", EXIT_USAGE) from None
    options = ScoreOptions(batch_size=batch_size, threshold=threshold, workers=workers, weights=weights, overwrite=overwrite,
                           wait=wait, dicom=DicomOptions(frontal_only=dicom_filter, tags=tags), scope_check=scope_check,
                           calibration=calibration, ray=ray or ray_address is not None, ray_address=ray_address)
    try:
        log = RunLog(log_file)
    except OSError as error:
        raise _fail(f"cannot open log file {log_file}: {error.strerror or error}", EXIT_USAGE) from None
    # Rows are kept only for a report on standard output, which cannot be read back.
    view = _ScoreView(log, quiet, keep_rows=labels and output == "-")
    with log, view, _sigterm_raises():
        try:
            summary = score_folder(folder, output, options, on_event=view)
        except RunError as stop:
            log.line("fatal" if stop.exit_code == EXIT_FATAL else "usage-error", f"{stop} (exit {stop.exit_code})")
            raise _fail(str(stop), stop.exit_code) from None
        except KeyboardInterrupt:
            log.line("fatal", f"interrupted (exit {EXIT_INTERRUPTED})")
            raise _fail("interrupted; run the same command again to resume", EXIT_INTERRUPTED) from None
        except _Terminated:
            log.line("fatal", f"terminated by SIGTERM (exit {EXIT_TERMINATED})")
            raise _fail("terminated (SIGTERM); run the same command again to resume", EXIT_TERMINATED) from None
        except Exception as error:  # the one place an unexpected failure is turned into a message and an exit code
            if debug:
                raise
            log.line("fatal", f"unexpected {type(error).__name__}: {error} (exit {EXIT_FATAL})")
            raise _fail(f"unexpected {type(error).__name__}: {error} (--debug shows the traceback)", EXIT_FATAL) from None
        view.finished(summary)
    if labels:
        _report_after_scoring(output, view.rows)
    raise typer.Exit(summary.exit_code)


class _Terminated(BaseException):
    """SIGTERM arrived: unwinds the run as Ctrl-C does (BaseException, so no handler of errors takes it)."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While scoring, SIGTERM (a service stop, `timeout`, cron's kill) ends the run cleanly with exit 143."""

    def terminate(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _ScoreView:
    """What `xscan score` shows of a run: messages and a progress bar on stderr, lines in the log file."""

    def __init__(self, log: RunLog, quiet: bool, keep_rows: bool) -> None:
        self._log = log
        self._quiet = quiet
        self._keep_rows = keep_rows
        self._progress: Any = None
        self.rows: list[Row] = []
        self._warnings: list[FileWarning] = []

    def __call__(self, event: Event) -> None:
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
            self._progress = tqdm(total=event.to_score, unit="scan", file=sys.stderr, disable=self._quiet or not sys.stderr.isatty())
        elif isinstance(event, RowsWritten):
            for row in event.rows:
                if row.error:
                    self._log.line("error", f"{row.path}: {row.error}")
            if self._keep_rows:
                self.rows.extend(event.rows)
            self._progress.update(len(event.rows))

    def finished(self, summary: ScoreSummary) -> None:
        from xscan.input.file_warnings import tally
        from xscan.input.formats import IMAGE_EXTENSIONS

        self.close()
        self._log.summary(summary)
        if self._quiet:
            return
        for kind in tally(self._warnings):  # one line per kind of warning, not per file: --log-file names the files
            times = "once" if kind.count == 1 else f"{kind.count} times"
            _say(f"warning, {times} ({kind.category} at {kind.origin}): {kind.first_message}")
        if not summary.found:
            _say(f"no scans found in {summary.folder} (looked for {' '.join(sorted(IMAGE_EXTENSIONS))})")
        scope = f" ({summary.out_of_scope} out of scope)" if summary.out_of_scope else ""
        line = (f"scored {summary.scored}{scope}, failed {summary.failed} in {summary.seconds:.1f} s ({summary.rate:.1f} images/s); "
                f"{summary.unchanged} unchanged, not read again")
        _say(line + (f"; {summary.skipped} skipped by the DICOM policy" if summary.skipped else ""))
        if summary.failed:
            _say(f"{summary.failed} file(s) could not be scored: see the error column of {summary.output}")

    def _note(self, kind: str, message: str) -> None:
        self._log.line(kind, message)
        if not self._quiet:
            _say(f"{kind}: {message}")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def __enter__(self) -> _ScoreView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _say(message: str) -> None:
    # One message, one line: paths are neither wrapped nor read as markup.
    err.print(message, markup=False, highlight=False, soft_wrap=True)


def _report_after_scoring(output: str, streamed: list[Row]) -> None:
    from xscan.reporting.labels import FolderLabels
    from xscan.reporting.report import ReportError, build_report, report_from_csv
    from xscan.reporting.view import print_report

    try:
        if output == "-":
            result = build_report(streamed, FolderLabels(), source="standard output")
        else:  # read back, so the report is exactly what `xscan report` says of the file
            result = report_from_csv(Path(output), FolderLabels())
    except ReportError as error:
        raise _fail(str(error), EXIT_USAGE) from None
    console = err if output == "-" else Console()
    print_report(result, console)
    console.print(DISCLAIMER)


@app.command()
def explain(
    paths: list[Path] = typer.Argument(..., help="Scans, or folders of scans searched recursively as by score."),
    output: Path = typer.Option(..., "-o", "--output", file_okay=False, help="Folder for the overlay PNGs and explain.csv."),
    size: int = typer.Option(None, min=64, max=4096, help="Pixels on the longer side of each overlay; default 512."),
    threshold: float = typer.Option(None, min=0.0, max=1.0, help="Decision threshold; default: the model card's."),
    workers: int = typer.Option(0, min=0, help="Decoding threads; 0 means one per CPU core."),
    weights: Path = typer.Option(None, help="Weights folder; default: the bundled model."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but usage and fatal errors."),
    debug: bool = typer.Option(False, "--debug", help="Show the Python traceback of an unexpected error."),
) -> None:
    """Show where the model looked: a Grad-CAM heatmap over each scan, one PNG per scan.

    Writes OUTPUT/<path below the folder>.png (a file given by name: OUTPUT/<name>.png): the
    scan at its own proportions, the ensemble's heatmap blended over it, a colour bar and a
    caption with the probability, label, threshold and model id. OUTPUT/explain.csv has the
    columns of score, then `overlay`, the PNG's path below OUTPUT. A file that cannot be read
    is a row with a reason in `error`, and the run goes on; exit codes as for score (0 all
    drawn, 2 usage, 3 fatal, 4 some files failed, 130 interrupted). The map shows where the
    evidence for pneumonia lies, coarsely (5 x 5 cells), not why: see docs/explain.md.

    xscan aids a physician; it is not a diagnostic device.

    Example:

    \b
        xscan explain ./scans -o heatmaps/
        xscan explain scan1.jpeg scan2.dcm -o heatmaps/ --size 1024
    """
    from xscan.errors import RunError

    try:
        code = _explain(paths, output, size, threshold, workers, weights, quiet)
    except RunError as stop:
        raise _fail(str(stop), stop.exit_code) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", EXIT_INTERRUPTED) from None
    except Exception as error:  # the one place an unexpected failure becomes a message and an exit code
        if debug:
            raise
        raise _fail(f"unexpected {type(error).__name__}: {error} (--debug shows the traceback)", EXIT_FATAL) from None
    raise typer.Exit(code)


def _explain(
    paths: list[Path], output: Path, size: int | None, threshold: float | None, workers: int, weights: Path | None, quiet: bool,
) -> int:
    """The explain command's flow; returns the exit code or raises a RunError."""
    import time

    from xscan.errors import EXIT_OK, EXIT_SOME_FAILED, ResultsWriteError, UsageError
    from xscan.explain.gradcam import LONG_SIDE, Explainer, OverlayClashError, overlay_plan
    from xscan.model.scorer import load_scorer

    missing = [path for path in paths if not path.exists()]
    if missing:
        raise UsageError(f"{missing[0]} does not exist")
    started = time.monotonic()
    try:
        plan, skipped = overlay_plan(paths)
    except OverlayClashError as error:
        raise UsageError(str(error)) from None
    for path, why in [] if quiet else skipped:
        _say(f"not-scanned: {path}: {why}")
    explainer = Explainer(load_scorer(weights))
    threshold = explainer.scorer.card.threshold if threshold is None else threshold
    try:
        drawn, failed = _explain_into(plan, explainer, output, size or LONG_SIDE, threshold, workers, quiet)
    except OSError as error:
        raise ResultsWriteError(f"cannot write to {output}: {error.strerror or error}") from None
    if not quiet:
        _say(f"drawn {drawn}, failed {failed} in {time.monotonic() - started:.1f} s; overlays and explain.csv in {output}")
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _explain_into(
    plan: list[tuple[Path, Path]], explainer: Explainer, output: Path, size: int, threshold: float, workers: int, quiet: bool,
) -> tuple[int, int]:
    from tqdm import tqdm

    from xscan.explain.gradcam import EXPLAIN_COLUMNS, EXPLAIN_CSV, write_overlays
    from xscan.scoring.results import ResultsWriter

    drawn = failed = 0
    output.mkdir(parents=True, exist_ok=True)
    progress = tqdm(total=len(plan), unit="scan", file=sys.stderr, disable=quiet or not sys.stderr.isatty())
    with ResultsWriter(output / EXPLAIN_CSV, EXPLAIN_COLUMNS) as writer, progress:
        for rows in write_overlays(plan, explainer, output, size, threshold, workers or None):
            writer.write(rows)
            failed += sum(1 for row in rows if row.error)
            drawn += sum(1 for row in rows if not row.error)
            progress.update(len(rows))
    return drawn, failed


@app.command()
def report(
    results: Path = typer.Argument(..., exists=True, dir_okay=False, help="Results CSV written by xscan score."),
    labels: bool = typer.Option(False, "--labels", help="Ground truth from NORMAL / PNEUMONIA folder names in each path."),
    labels_file: Path = typer.Option(None, "--labels-file", exists=True, dir_okay=False,
                                     help="Ground truth from a CSV with columns path,label (NORMAL/PNEUMONIA or 0/1); a path "
                                     "matches the path as scored (or, with --labels-root, below that folder), never a file "
                                     "name alone."),
    labels_root: Path = typer.Option(None, "--labels-root", file_okay=False,
                                     help="The folder the --labels-file paths are relative to (e.g. the folder scored)."),
    threshold: float = typer.Option(None, min=0.0, max=1.0, help="Report at this threshold; default: the CSV's."),
    target_sensitivity: float = typer.Option(0.95, min=0.0, max=1.0, help="Add the operating point reaching this sensitivity."),
    bootstrap: int = typer.Option(1000, min=0, help="Bootstrap resamples for the AUC, AP, F1 and balanced accuracy intervals."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    plots: Path = typer.Option(None, "--plots", file_okay=False, help="Write PNG plots into this folder (needs xscan[plots])."),
    html: Path = typer.Option(None, "--html", file_okay=False, help="Write an offline review page, DIR/index.html with its "
                              "plots and galleries of scans with heatmaps, into this folder (needs xscan[plots])."),
    gallery: int = typer.Option(None, "--gallery", min=0, metavar="N", help="Scans per gallery of the --html page; default 12."),
    weights: Path = typer.Option(None, help="Weights folder for the --html heatmaps; default: the bundled model."),
) -> None:
    """Report how well the scores in RESULTS agree with ground truth, or summarize them without it.

    With labels: confusion matrix, sensitivity, specificity, precision, NPV, F1, accuracy and
    balanced accuracy with 95 % Wilson intervals, ROC AUC and average precision with bootstrap
    intervals, and a table of operating points to choose a threshold from. Without labels:
    counts per predicted label, errors and a histogram of probabilities. Rows with errors or
    without ground truth are counted in a note, never dropped silently.
    xscan aids a physician; it is not a diagnostic device.

    --html DIR writes DIR/index.html, a page that opens from the file system with no network:
    the metrics, plots and operating points above, and galleries of thumbnails with Grad-CAM
    heatmaps (false negatives, false positives, nearest the threshold, out of scope, errors;
    without labels the highest, the lowest and nearest the threshold), each capped at
    --gallery N and sorted most wrong first. Only the shown scans get heatmaps; their files
    must be readable at the paths in the CSV (or relative to the CSV's folder).

    Example:

    \b
        xscan report results.csv --labels
        xscan report results.csv --labels-file truth.csv --labels-root ./export --json --plots plots/
        xscan report results.csv --labels --html review/ --gallery 24
    """
    from xscan.reporting.plots import PlotsUnavailable, require_matplotlib, write_plots
    from xscan.reporting.report import ReportError, report_from_csv
    from xscan.reporting.view import print_report, report_json

    truth = _ground_truth(labels, labels_file, labels_root)
    if plots or html:
        try:
            require_matplotlib()  # fail before the work, not after it
        except PlotsUnavailable as error:
            raise _fail(str(error), EXIT_FATAL) from None
    try:
        result = report_from_csv(results, truth, threshold=threshold, target_sensitivity=target_sensitivity, bootstrap=bootstrap)
    except ReportError as error:
        raise _fail(str(error), EXIT_USAGE) from None
    if json_output:
        typer.echo(report_json(result))
    else:
        console = Console()
        print_report(result, console)
        console.print(DISCLAIMER)
    for path in write_plots(result, plots) if plots else []:
        err.print(f"wrote {path}", highlight=False, markup=False)
    if html:
        _review_page(result, results, html, truth, gallery, weights)


def _review_page(result: Report, results: Path, folder: Path, truth: GroundTruth | None, gallery: int | None,
                 weights: Path | None) -> None:
    from xscan.errors import WeightsError
    from xscan.reporting.review_page import GALLERY_SIZE, write_review_page

    try:
        page = write_review_page(result, results, folder, truth, GALLERY_SIZE if gallery is None else gallery, weights)
    except WeightsError as error:
        raise _fail(str(error), EXIT_FATAL) from None
    except OSError as error:
        raise _fail(f"cannot write the review page into {folder}: {error.strerror or error}", EXIT_FATAL) from None
    for note in page.notes:
        _say(f"note: {note}")
    _say(f"wrote {page.index} ({len(page.pictures)} scans drawn in {page.heatmap_seconds:.1f} s; "
         f"{page.seconds:.1f} s in all)")


def _ground_truth(labels: bool, labels_file: Path | None, labels_root: Path | None) -> GroundTruth | None:
    from xscan.reporting.labels import FileLabels, FolderLabels, LabelsError

    if labels and labels_file:
        raise _fail("use --labels or --labels-file, not both", EXIT_USAGE)
    if labels_root and not labels_file:
        raise _fail("--labels-root says where the paths of a --labels-file are relative to: give --labels-file too", EXIT_USAGE)
    if labels_file:
        try:
            return FileLabels.read(labels_file, labels_root)
        except LabelsError as error:
            raise _fail(str(error), EXIT_USAGE) from None
    return FolderLabels() if labels else None


@app.command()
def calibrate(
    results: Path = typer.Argument(..., exists=True, dir_okay=False, help="Results CSV written by xscan score (without --calibration)."),
    output: Path = typer.Option(..., "-o", "--output", dir_okay=False, help="The site calibration file to write (SITE.json)."),
    labels: bool = typer.Option(False, "--labels", help="Ground truth from NORMAL / PNEUMONIA folder names in each path."),
    labels_file: Path = typer.Option(None, "--labels-file", exists=True, dir_okay=False,
                                     help="Ground truth from a CSV with columns path,label; a path matches the path as scored "
                                     "(or, with --labels-root, below that folder), never a file name alone."),
    labels_root: Path = typer.Option(None, "--labels-root", file_okay=False,
                                     help="The folder the --labels-file paths are relative to (e.g. the folder scored)."),
    target_sensitivity: float = typer.Option(0.95, min=0.01, max=1.0, help="The site threshold is the highest reaching this sensitivity."),
    prevalence: float = typer.Option(None, min=0.001, max=0.999, help="The site's share of pneumonia, when the labelled sample's "
                                     "share differs from it (say, a sample of 50 + 50): moves the calibration's intercept there."),
) -> None:
    """Make the model your site's own: a threshold and calibration from a few labelled local scans.

    Score a labelled local sample with the bundled model, then calibrate on its results. Only
    rows with ground truth, a probability and no error count (the rest are counted and named);
    at least 20 scans of each class are needed. SITE.json holds the base model id, the new
    threshold (the highest reaching the target sensitivity on these scans), the refitted
    calibration (intercept; slope too from 100 scans of each class), the counts, and the
    sensitivity and specificity at the new threshold with 95 % intervals, on these scans and
    cross-checked on scans that did not choose it. Then score with --calibration SITE.json.
    xscan aids a physician; it is not a diagnostic device.

    Example:

    \b
        xscan score ./local-sample -o sample.csv
        xscan calibrate sample.csv --labels -o site.json
        xscan score ./scans -o results.csv --calibration site.json
    """
    from xscan.model.site_calibration import SiteCalibrationError
    from xscan.reporting.report import ReportError, read_results
    from xscan.site.calibrate import fit_site_calibration, select_rows

    truth = _ground_truth(labels, labels_file, labels_root)
    if truth is None:
        raise _fail("calibrate needs ground truth: --labels or --labels-file", EXIT_USAGE)
    try:
        labelled = select_rows(read_results(results), truth)
        site = fit_site_calibration(labelled, target_sensitivity, prevalence)
    except (ReportError, SiteCalibrationError) as error:
        raise _fail(str(error), EXIT_USAGE) from None
    try:
        output.write_text(site.to_json())
    except OSError as error:
        raise _fail(f"cannot write {output}: {error.strerror or error}", EXIT_FATAL) from None
    _print_site(site, labelled.left_out, output)


def _print_site(site: SiteCalibration, left_out: dict[str, list[str]], output: Path) -> None:
    console = Console()
    table = Table(title=f"site calibration for {site.base_model}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("scans used", f"{site.counts['used']} ({site.counts['NORMAL']} NORMAL, {site.counts['PNEUMONIA']} PNEUMONIA)")
    table.add_row("threshold", f"{site.threshold:.4f} (highest reaching sensitivity >= {site.target_sensitivity:g} on these scans)")
    table.add_row("calibration", f"sigmoid({site.slope:.3f} * logit(p) + {site.intercept:.3f}), refitted: {site.refit}")
    for name in ("sensitivity", "specificity"):
        figure = site.at_threshold[name]
        low, high = figure["interval"]
        table.add_row(name, f"{figure['value']:.3f} (95 % CI {low:.3f}-{high:.3f}) on these scans; "
                      f"{site.cross_checked[name]:.3f} cross-checked ({site.cross_checked['folds']} folds)")
    console.print(table)
    for reason, paths in left_out.items():
        more = f" (and {len(paths) - 3} more)" if len(paths) > 3 else ""
        console.print(f"left out, {reason}: {len(paths)}: {'; '.join(paths[:3])}{more}", markup=False, highlight=False)
    console.print(f"wrote {output}; score with --calibration {output}", markup=False, highlight=False)
    console.print(DISCLAIMER)


@app.command()
def info(
    weights: Path = typer.Option(None, help="Weights folder; default: the bundled model."),
) -> None:
    """Print the model card: architecture, preprocessing, threshold, training data and validation metrics.

    Example:

        xscan info
    """
    from xscan.errors import WeightsError
    from xscan.model.card import default_weights_dir, read_card

    try:
        card = read_card(weights or default_weights_dir())
    except WeightsError as error:
        raise _fail(str(error), EXIT_FATAL) from None
    console = Console()
    table = Table(title=f"{card.model_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("model id", card.model_id)
    table.add_row("architecture", ", ".join(f"{k}={v}" for k, v in card.config.items()))
    table.add_row("preprocessing", card.preprocessing.get("steps", ""))
    table.add_row("input size", f"{card.image_size} x {card.image_size}")
    table.add_row("threshold", f"{card.threshold:.4f} ({card.threshold_rule})")
    table.add_row("calibration", f"sigmoid(logit / {card.temperature:.3f} + {card.bias:.3f}), fitted on the selection part")
    data = card.training.get("data", {})
    table.add_row("training data", f"{data.get('source', '')}\ntrain {data.get('train')}, selection {data.get('selection')}, "
                  f"report {data.get('report')}")
    if card.intended_population:
        table.add_row("intended population", card.intended_population)
    if card.scope:
        rates = "\n".join(f"{rate:.3f} of {name}" for name, rate in card.scope.get("rates", {}).items())
        table.add_row("out-of-scope check", f"in-scope probability < {card.scope['in_scope_threshold']:.4f} or feature distance > "
                      f"{card.scope['distance_threshold']:.1f} ({card.scope.get('threshold_rule', '')})\n{rates}")
    table.add_row("trained with", f"{card.training.get('command', '')}\n{card.training.get('minutes', '?')} min, "
                  f"keras {card.training.get('keras_version', '?')}, started {card.training.get('started', '?')}")
    table.add_row("weights sha256", card.weights_sha256)
    console.print(table)
    metrics = Table(title="validation, report part (patients held out that chose nothing)", title_justify="left")
    names = ("n", "auc", "accuracy", "sensitivity", "specificity", "precision", "brier", "ece")
    for name in names:
        metrics.add_column(name, justify="right")
    metrics.add_row(*(_fmt(card.validation.get(name)) for name in names))
    console.print(metrics)
    if card.robustness:
        shifts = Table(title="robustness on validation under acquisition shifts", title_justify="left")
        for name in ("shift", "auc", "sensitivity", "specificity"):
            shifts.add_column(name, justify="left" if name == "shift" else "right")
        for row in card.robustness:
            shifts.add_row(*(_fmt(row[name]) for name in ("shift", "auc", "sensitivity", "specificity")))
        console.print(shifts)
    console.print(DISCLAIMER)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


if __name__ == "__main__":
    app()
