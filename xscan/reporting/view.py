"""The report as rich tables or one JSON object; formatting only, every number comes from xscan.report."""

from __future__ import annotations

import json
import math

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from xscan.model.classes import NEGATIVE, POSITIVE
from xscan.reporting.report import Evaluation, Report, Summary

BAR_WIDTH = 40  # characters of the longest histogram bar

# (key, name shown, what it means), in the order printed.
METRICS = (
    ("sensitivity", "sensitivity (recall)", "share of pneumonia scans flagged"),
    ("specificity", "specificity", "share of normal scans passed as normal"),
    ("precision", "precision (PPV)", "share of flagged scans that are pneumonia"),
    ("npv", "NPV", "share of passed scans that are normal"),
    ("f1", "F1", "harmonic mean of precision and sensitivity"),
    ("accuracy", "accuracy", "share of all scans called right"),
    ("balanced_accuracy", "balanced accuracy", "mean of sensitivity and specificity"),
    ("auc", "ROC AUC", "chance a pneumonia scan scores above a normal one"),
    ("average_precision", "average precision", "area under the precision-recall curve"),
)


def number(value: float | None) -> str:
    """Format a metric with 4 decimals.

    Args:
        value: The metric, or None.

    Returns:
        The text; 'undefined' for None or NaN (say, AUC with one class).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "undefined"
    return f"{value:.4f}"


def report_json(report: Report) -> str:
    """Write the report as one JSON object.

    Args:
        report: The report.

    Returns:
        Indented JSON; allow_nan=False guarantees the text is valid JSON.
    """
    return json.dumps(report.as_dict(), indent=2, allow_nan=False)


def print_report(report: Report, console: Console) -> None:
    """Print the report as tables: metrics when there is ground truth, else the unlabelled summary.

    Args:
        report: The report.
        console: Where to print it.
    """
    threshold_from = "--threshold" if report.threshold_source == "option" else "the CSV"
    console.print(
        f"[bold]{escape(report.source or 'results')}[/bold]: {report.summary.rows} rows, "
        f"threshold {report.threshold:.6f} from {threshold_from}",
        highlight=False,
    )
    if report.evaluation:
        console.print(f"ground truth from {report.labels_from}", highlight=False, markup=False)
        console.print(confusion_table(report.evaluation))
        console.print(metrics_table(report.evaluation, report.bootstrap))
        console.print(operating_points_table(report.evaluation))
    else:
        console.print(predicted_table(report.summary))
        console.print(histogram_table(report.summary, report.threshold))
    for note in report.notes:
        console.print(f"note: {note}", highlight=False, markup=False)  # paths may hold [brackets]


def confusion_table(evaluation: Evaluation) -> Table:
    """Lay out the confusion matrix, with totals.

    Args:
        evaluation: The report's evaluation against ground truth.

    Returns:
        The table.
    """
    m = evaluation.metrics
    table = Table(title="confusion matrix", title_justify="left")
    for name in ("", f"predicted {POSITIVE}", f"predicted {NEGATIVE}", "total"):
        table.add_column(name, justify="right")
    table.add_row(f"actual {POSITIVE}", str(m["tp"]), str(m["fn"]), str(m["tp"] + m["fn"]))
    table.add_row(f"actual {NEGATIVE}", str(m["fp"]), str(m["tn"]), str(m["fp"] + m["tn"]))
    table.add_row("total", str(m["tp"] + m["fp"]), str(m["fn"] + m["tn"]), str(m["n"]), style="bold")
    return table


def metrics_table(evaluation: Evaluation, bootstrap: int) -> Table:
    """Lay out the metrics at the threshold with their 95 % intervals and what each means.

    Args:
        evaluation: The report's evaluation against ground truth.
        bootstrap: The number of bootstrap resamples behind the AUC's intervals, for the title.

    Returns:
        The table.
    """
    table = Table(
        title=f"metrics at the threshold, 95 % intervals (Wilson; bootstrap of {bootstrap})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for name in ("metric", "value", "95 % interval", "meaning"):
        table.add_column(name, justify="right" if name in ("value", "95 % interval") else "left")
    for key, name, meaning in METRICS:
        interval = evaluation.intervals[key]
        shown = "" if math.isnan(interval.low) else f"{number(interval.low)}-{number(interval.high)}"
        table.add_row(name, number(evaluation.metrics[key]), shown, meaning)
    return table


def operating_points_table(evaluation: Evaluation) -> Table:
    """Lay out the operating points to choose a threshold from.

    Args:
        evaluation: The report's evaluation against ground truth.

    Returns:
        The table.
    """
    table = Table(
        title="operating points: a sensitive threshold screens, a specific one confirms",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    for name in ("rule", "thresh.", "sens.", "spec.", "PPV", "NPV", "TP", "FP", "TN", "FN"):
        table.add_column(name, justify="left" if name == "rule" else "right", no_wrap=name != "rule")
    for point in evaluation.operating_points:
        # Thresholds with the CSV's 6 decimals: nearby operating points can differ only there.
        table.add_row(
            point.rule,
            f"{point.threshold:.6f}",
            *(number(v) for v in (point.sensitivity, point.specificity, point.precision, point.npv)),
            *(str(v) for v in (point.tp, point.fp, point.tn, point.fn)),
        )
    return table


def predicted_table(summary: Summary) -> Table:
    """Lay out the counts per predicted label, out of scope and errors, without ground truth.

    Args:
        summary: The report's summary of the rows.

    Returns:
        The table.
    """
    table = Table(title="predicted labels (no ground truth given)", title_justify="left")
    for name in (f"predicted {POSITIVE}", f"predicted {NEGATIVE}", "out of scope", "errors", "total"):
        table.add_column(name, justify="right")
    table.add_row(
        str(summary.predicted[POSITIVE]),
        str(summary.predicted[NEGATIVE]),
        str(len(summary.out_of_scope)),
        str(len(summary.errors)),
        str(summary.rows),
    )
    return table


def histogram_table(summary: Summary, threshold: float) -> Table:
    """Draw the histogram of probabilities, marking the threshold's bin.

    Args:
        summary: The report's summary of the rows.
        threshold: The report's threshold.

    Returns:
        The table.
    """
    table = Table(title="probability of pneumonia", title_justify="left", box=None)
    for name in ("probability", "scans", ""):
        table.add_column(name, justify="left" if name == "" else "right")
    edges, counts = summary.histogram_edges, summary.histogram_counts
    largest = max(counts) or 1
    for low, high, count in zip(edges, edges[1:], counts, strict=False):
        marker = " <- threshold" if low <= threshold < high or (high == 1.0 and threshold == 1.0) else ""
        table.add_row(f"{low:.1f}-{high:.1f}", str(count), "#" * round(BAR_WIDTH * count / largest) + marker)
    return table
