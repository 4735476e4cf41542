"""`xscan report`: options, and the report as tables, JSON, plots or an offline review page (xscan.reporting's)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from xscan.about import DISCLAIMER
from xscan.cli.app import exit_codes, say
from xscan.cli.options import ground_truth, labels_file_option, labels_option, labels_root_option
from xscan.errors import ResultsWriteError

if TYPE_CHECKING:
    from xscan.reporting.labels import GroundTruth
    from xscan.reporting.report import Report
    from xscan.scoring.results import Row


def report(
    results: Path = typer.Argument(..., exists=True, dir_okay=False, help="Results CSV written by xscan score."),
    labels: bool = labels_option(),
    labels_file: Path = labels_file_option(),
    labels_root: Path = labels_root_option(),
    threshold: float = typer.Option(None, min=0.0, max=1.0, help="Report at this threshold; default: the CSV's."),
    target_sensitivity: float = typer.Option(
        0.95, min=0.0, max=1.0, help="Add the operating point reaching this sensitivity."
    ),
    bootstrap: int = typer.Option(
        1000, min=0, help="Bootstrap resamples for the AUC, AP, F1 and balanced accuracy intervals."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    plots: Path = typer.Option(
        None, "--plots", file_okay=False, help="Write PNG plots into this folder (needs xscan[plots])."
    ),
    html: Path = typer.Option(
        None,
        "--html",
        file_okay=False,
        help="Write an offline review page, DIR/index.html with its "
        "plots and galleries of scans with heatmaps, into this folder (needs xscan[plots]).",
    ),
    gallery: int = typer.Option(
        None, "--gallery", min=0, metavar="N", help="Scans per gallery of the --html page; default 12."
    ),
    weights: Path = typer.Option(None, help="Weights folder for the --html heatmaps; default: the bundled model."),
    reads: Path = typer.Option(
        None,
        "--reads",
        exists=True,
        dir_okay=False,
        help="With --html: radiologists' reads (as xscan audit takes them); the page shows the audit per week.",
    ),
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
    must be readable at the paths in the CSV (or relative to the CSV's folder). With --reads
    READS.csv the page also shows `xscan audit`'s weekly periods and verdict against the card's
    promise, and its plot.

    Example:

    \b
        xscan report results.csv --labels
        xscan report results.csv --labels-file truth.csv --labels-root ./export --json --plots plots/
        xscan report results.csv --labels --html review/ --gallery 24
        xscan report results.csv --labels --html review/ --reads reads.csv
    """  # noqa: D301, D412  (Click keeps a paragraph that starts with \b, a backspace, as written)
    from xscan.reporting.plots import require_matplotlib, write_plots
    from xscan.reporting.report import build_report, read_results
    from xscan.reporting.view import print_report, report_json

    with exit_codes():
        truth = ground_truth(labels, labels_file, labels_root)
        if plots or html:
            require_matplotlib()  # fail before the work, not after it
        rows = read_results(results)  # once: the report, the galleries and the drift verdict all take these rows
        result = build_report(
            rows,
            truth,
            threshold=threshold,
            target_sensitivity=target_sensitivity,
            bootstrap=bootstrap,
            source=str(results),
        )
        if json_output:
            typer.echo(report_json(result))
        else:
            console = Console()
            print_report(result, console)
            console.print(DISCLAIMER)
        for path in write_plots(result, plots) if plots else []:
            say(f"wrote {path}")
        if html:
            _review_page(result, rows, results, html, truth, gallery, weights, reads)


def _review_page(
    result: Report,
    rows: list[Row],
    results: Path,
    folder: Path,
    truth: GroundTruth | None,
    gallery: int | None,
    weights: Path | None,
    reads: Path | None,
) -> None:
    from xscan.reporting.review_page import GALLERY_SIZE, write_review_page

    audit = None
    if reads is not None:
        from xscan.audit.check import audit_results
        from xscan.audit.page import audit_block

        audit = audit_block(audit_results(results, reads, weights_dir=weights), folder)
    size = GALLERY_SIZE if gallery is None else gallery
    try:
        page = write_review_page(result, rows, results, folder, truth, size, weights, audit)
    except OSError as error:
        raise ResultsWriteError(f"cannot write the review page into {folder}: {error.strerror or error}") from None
    for note in page.notes:
        say(f"note: {note}")
    say(
        f"wrote {page.index} ({len(page.pictures)} scans drawn in {page.heatmap_seconds:.1f} s; "
        f"{page.seconds:.1f} s in all)"
    )
