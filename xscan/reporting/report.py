"""The report: how scored rows agree with ground truth (metrics, intervals, operating points), as plain data."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xscan.errors import UsageError
from xscan.model.classes import NEGATIVE, POSITIVE
from xscan.reporting.labels import GroundTruth
from xscan.scoring.results import COLUMNS, Row, read_rows
from xscan.stats.calibration import threshold_for_sensitivity, threshold_for_specificity, youden_threshold
from xscan.stats.intervals import PROPORTIONS, Interval, bootstrap_intervals, wilson_interval
from xscan.stats.metrics import binary_metrics

HISTOGRAM_BINS = 10
NOTE_EXAMPLES = 3  # paths named in a note before "and N more"


class ReportError(UsageError, ValueError):
    """Results or labels that cannot give a report; the message says why and what to do."""


@dataclass(frozen=True)
class OperatingPoint:
    """One threshold a site could run at, why it is listed, and the counts and rates it gives."""

    rule: str  # why this threshold is in the table
    threshold: float
    sensitivity: float
    specificity: float
    precision: float
    npv: float
    tp: int
    fp: int
    tn: int
    fn: int


@dataclass(frozen=True)
class Summary:
    """What can be said without ground truth."""

    rows: int
    predicted: dict[str, int]  # PNEUMONIA / NORMAL at the report's threshold
    errors: list[tuple[str, str]]  # (path, error) of rows that could not be scored
    out_of_scope: list[tuple[str, str]]  # (path, scope) of rows judged out of scope: in no metric
    histogram_edges: list[float]
    histogram_counts: list[int]
    probabilities: np.ndarray  # of every scored row, for plots


@dataclass(frozen=True)
class Evaluation:
    """What ground truth adds: metrics at the threshold, their intervals and other operating points."""

    metrics: dict[str, float]  # xscan.stats.metrics.binary_metrics at the report's threshold
    intervals: dict[str, Interval]
    operating_points: list[OperatingPoint]
    truth: np.ndarray  # 0/1 of the rows in the metrics
    probabilities: np.ndarray  # of the same rows
    without_truth: list[str]  # paths of scored rows that have no ground truth
    resamples_used: int  # bootstrap resamples holding both classes


@dataclass(frozen=True)
class Report:
    """The whole report: the threshold and where it came from, the summary, the evaluation and the notes."""

    source: str
    threshold: float
    threshold_source: str  # "csv" or "option"
    labels_from: str | None
    bootstrap: int
    seed: int
    summary: Summary
    evaluation: Evaluation | None
    notes: list[str]

    def as_dict(self) -> dict[str, object]:
        """Lay out the report as JSON-ready data.

        Returns:
            Metrics at the threshold at the top level (with labels), then the summary, options and
            notes; undefined numbers as None.
        """
        data: dict[str, object] = {}
        if self.evaluation:
            data.update(self.evaluation.metrics)
            data["intervals"] = {
                name: {"low": i.low, "high": i.high, "method": i.method}
                for name, i in self.evaluation.intervals.items()
            }
            data["operating_points"] = [vars(point) for point in self.evaluation.operating_points]
            data["without_ground_truth"] = len(self.evaluation.without_truth)
            data["bootstrap_resamples_used"] = self.evaluation.resamples_used
        else:
            data["n"] = sum(self.summary.predicted.values())
        data.update(
            threshold=self.threshold,
            threshold_source=self.threshold_source,
            source=self.source,
            labels_from=self.labels_from,
            rows=self.summary.rows,
            errors=len(self.summary.errors),
            predicted=self.summary.predicted,
            out_of_scope=len(self.summary.out_of_scope),
            histogram={"edges": self.summary.histogram_edges, "counts": self.summary.histogram_counts},
            bootstrap=self.bootstrap,
            seed=self.seed,
            notes=self.notes,
        )
        return _finite_or_none(data)


def _finite_or_none(value: object) -> object:
    # JSON has no NaN: an undefined metric (say AUC with one class) becomes null.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(item) for item in value]
    return value


def operating_points(
    truth: np.ndarray, probabilities: np.ndarray, rules: list[tuple[str, float]]
) -> list[OperatingPoint]:
    """Measure each distinct threshold of the rules.

    Args:
        truth: 0/1 ground truth of the rows.
        probabilities: The rows' probabilities.
        rules: (why, threshold) pairs, in the order to list them.

    Returns:
        One operating point per distinct threshold, in order; rules sharing a threshold share a row.
    """
    merged: dict[float, list[str]] = {}
    for rule, threshold in rules:
        merged.setdefault(threshold, []).append(rule)
    points = []
    for threshold, names in merged.items():
        m = binary_metrics(truth, probabilities, threshold)
        points.append(
            OperatingPoint(
                "; ".join(names),
                threshold,
                m["sensitivity"],
                m["specificity"],
                m["precision"],
                m["npv"],
                m["tp"],
                m["fp"],
                m["tn"],
                m["fn"],
            )
        )
    return points


def _threshold_rules(
    truth: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    stored: float | None,
    target_sensitivity: float,
    target_specificity: float,
) -> list[tuple[str, float]]:
    rules = [("CSV", threshold)] if threshold == stored else [("--threshold", threshold)]
    if stored is not None and stored != threshold:
        rules.append(("CSV", stored))
    if truth.min() != truth.max():
        rules += [
            (f"sens >= {target_sensitivity:g}", threshold_for_sensitivity(probabilities, truth, target_sensitivity)),
            (f"spec >= {target_specificity:g}", threshold_for_specificity(probabilities, truth, target_specificity)),
            ("Youden J", youden_threshold(probabilities, truth)),
        ]
    return [*rules, ("0.5", 0.5)]


def _summary(rows: Sequence[Row], threshold: float) -> Summary:
    probabilities = np.array([row.probability for row in rows if _measured(row)], dtype=float)
    counts, edges = np.histogram(probabilities, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    flagged = int((probabilities >= threshold).sum())
    return Summary(
        rows=len(rows),
        predicted={POSITIVE: flagged, NEGATIVE: int(probabilities.size - flagged)},
        errors=[(row.path, row.error or "no probability") for row in rows if _failed(row)],
        out_of_scope=[(row.path, row.scope) for row in rows if row.scope and not _failed(row)],
        histogram_edges=[round(float(edge), 6) for edge in edges],  # 0.3, not 0.30000000000000004
        histogram_counts=[int(count) for count in counts],
        probabilities=probabilities,
    )


def _failed(row: Row) -> bool:
    return bool(row.error) or row.probability is None


def _measured(row: Row) -> bool:
    """Whether a row counts in the metrics: scored, and not judged out of scope."""
    return not _failed(row) and not row.scope


def _evaluate(
    rows: Sequence[Row],
    truth_of: GroundTruth,
    threshold: float,
    stored: float | None,
    target_sensitivity: float,
    target_specificity: float,
    bootstrap: int,
    seed: int,
) -> Evaluation:
    labelled = [(row, truth_of(row.path)) for row in rows]
    if all(label is None for _, label in labelled):
        raise ReportError(
            f"no row got ground truth from {truth_of.description}; the first row's path is {rows[0].path}"
        )
    known = [(row, label) for row, label in labelled if label is not None and _measured(row)]
    if not known:
        raise ReportError("every row with ground truth could not be scored: nothing to measure")
    truth = np.array([label for _, label in known], dtype=int)
    probabilities = np.array([row.probability for row, _ in known], dtype=float)
    metrics = binary_metrics(truth, probabilities, threshold)
    intervals = {name: Interval(*wilson_interval(*count(metrics)), "wilson") for name, count in PROPORTIONS.items()}
    resampled, used = bootstrap_intervals(truth, probabilities, threshold, bootstrap, seed)
    intervals.update(resampled)
    rules = _threshold_rules(truth, probabilities, threshold, stored, target_sensitivity, target_specificity)
    return Evaluation(
        metrics=metrics,
        intervals=intervals,
        operating_points=operating_points(truth, probabilities, rules),
        truth=truth,
        probabilities=probabilities,
        resamples_used=used,
        without_truth=[row.path for row, label in labelled if label is None and _measured(row)],
    )


def _listed(items: list[str]) -> str:
    more = len(items) - NOTE_EXAMPLES
    return "; ".join(items[:NOTE_EXAMPLES]) + (f" (and {more} more)" if more > 0 else "")


def _notes(summary: Summary, evaluation: Evaluation | None, bootstrap: int) -> list[str]:
    notes = []
    if summary.errors:
        notes.append(
            f"{len(summary.errors)} row(s) could not be scored and are not counted: "
            + _listed([f"{path}: {error}" for path, error in summary.errors])
        )
    if summary.out_of_scope:
        notes.append(
            f"{len(summary.out_of_scope)} row(s) were judged out of scope (label OUT_OF_SCOPE) and are in no metric: "
            + _listed([f"{path}: {scope}" for path, scope in summary.out_of_scope])
        )
    if evaluation is None:
        return notes
    if evaluation.without_truth:
        notes.append(
            f"{len(evaluation.without_truth)} scored row(s) have no ground truth and are not in the metrics: "
            + _listed(evaluation.without_truth)
        )
    if evaluation.truth.min() == evaluation.truth.max():
        only = POSITIVE if evaluation.truth[0] else NEGATIVE
        notes.append(
            f"only {only} scans have ground truth: ROC AUC, average precision and the rates of the missing class "
            "are undefined; the Youden and target thresholds need both classes"
        )
    elif evaluation.resamples_used < bootstrap:
        notes.append(
            f"{bootstrap - evaluation.resamples_used} of {bootstrap} bootstrap resamples held one class only "
            "and were skipped"
        )
    return notes


def _stored_threshold(rows: Sequence[Row], needed: bool) -> float | None:
    """The one threshold the rows were scored at; None if several, an error if several and `needed`."""
    thresholds = sorted({row.threshold for row in rows})
    if len(thresholds) > 1 and needed:
        raise ReportError(
            f"rows were scored at {len(thresholds)} different thresholds "
            f"({', '.join(f'{t:g}' for t in thresholds[:5])}); pass --threshold to choose one"
        )
    return thresholds[0] if len(thresholds) == 1 else None


def build_report(
    rows: Sequence[Row],
    truth: GroundTruth | None = None,
    threshold: float | None = None,
    target_sensitivity: float = 0.95,
    target_specificity: float = 0.95,
    bootstrap: int = 1000,
    seed: int = 0,
    source: str = "",
) -> Report:
    """Build the report on scored rows, with metrics when ground truth is given.

    Args:
        rows: The results' rows.
        truth: The ground truth, if any.
        threshold: The threshold to report at; None: the one the rows were scored at.
        target_sensitivity: The sensitivity an operating point must reach.
        target_specificity: The specificity an operating point must reach.
        bootstrap: Resamples for the intervals of ROC AUC and average precision.
        seed: The bootstrap's seed.
        source: Where the rows come from, for the report and its messages.

    Returns:
        The report.

    Raises:
        ReportError: There are no rows; no threshold is given and the rows were scored at several;
            no row has ground truth; or every row with ground truth failed.
    """
    if not rows:
        raise ReportError(f"{source or 'the results'} has no rows: nothing to report")
    threshold_source = "csv" if threshold is None else "option"
    stored = _stored_threshold(rows, needed=threshold is None)
    threshold = stored if threshold is None else threshold
    summary = _summary(rows, threshold)
    evaluation = None
    if truth is not None:
        evaluation = _evaluate(rows, truth, threshold, stored, target_sensitivity, target_specificity, bootstrap, seed)
    return Report(
        source=source,
        threshold=threshold,
        threshold_source=threshold_source,
        labels_from=truth.description if truth is not None else None,
        bootstrap=bootstrap,
        seed=seed,
        summary=summary,
        evaluation=evaluation,
        notes=_notes(summary, evaluation, bootstrap),
    )


def read_results(source: Path) -> list[Row]:
    """Read all rows of an xscan results CSV.

    Args:
        source: The results CSV.

    Returns:
        Its rows, in file order.

    Raises:
        ReportError: The file is empty or not a results file, saying why.
    """
    if source.stat().st_size == 0:
        raise ReportError(f"{source} is empty: expected an xscan results CSV with columns {','.join(COLUMNS)}")
    try:
        return list(read_rows(source))
    except ValueError as error:  # NotResultsError names the missing columns; float() names a bad number
        raise ReportError(f"{source}: {error}" if str(source) not in str(error) else str(error)) from None


def report_from_csv(source: Path, truth: GroundTruth | None = None, **options: float | int | None) -> Report:
    """Build the report on the rows of a results CSV.

    Args:
        source: The results CSV.
        truth: The ground truth, if any.
        **options: `build_report`'s keyword arguments.

    Returns:
        The report.

    Raises:
        ReportError: As `read_results` and `build_report` raise it.
    """
    return build_report(read_results(source), truth, source=str(source), **options)
