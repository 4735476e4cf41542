"""The audit itself: reads per period, each figure with its Wilson interval, and one CUSUM test per promised figure.

Each promised figure is watched by a one-sided Bernoulli CUSUM (xscan.stats.cusum) over its
class's reads in time order (with `--by run`, in run order): sensitivity over the pneumonia reads
(a failure: a pneumonia read the model left below its threshold), specificity over the normal reads
(a failure: a normal read it flagged). Each chart's limit is set for its number of reads, so
looking at every read of every period is one test; Holm's correction across the two figures
(xscan.stats.multiple) keeps the chance of any false alarm, while both promises hold, at ALPHA.
The verdict is broken when either chart passes its limit; too few reads to tell when it holds but a
class has fewer reads than detect a 10-point drop with chance POWER; else it holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from xscan.audit.promise import Promised, promises
from xscan.audit.reads import Judged, Matched, Reads, match_reads, read_reads
from xscan.errors import UsageError
from xscan.model.card import default_weights_dir, read_card
from xscan.model.site_calibration import load_site
from xscan.stats import cusum
from xscan.stats.intervals import wilson_interval
from xscan.stats.multiple import holm, holm_levels

ALPHA = 0.05  # the chance of any false alarm on an audit while both promises hold
POWER = 0.8  # the chance of seeing a 10-point drop that `reads needed` is computed for
PERIODS = ("day", "week", "month", "run")
HOLDS, BROKEN, TOO_FEW = "holds", "broken", "too few reads to tell"
CLASS_OF = {"sensitivity": 1, "specificity": 0}  # whose reads each figure is measured on
CLASS_WORDS = {1: "pneumonia", 0: "normal"}


@dataclass(frozen=True)
class Proportion:
    """A figure of one period as a proportion of reads, with its 95 % Wilson interval."""

    successes: int
    trials: int
    value: float | None  # None without trials
    low: float | None  # 95 % Wilson interval
    high: float | None

    @classmethod
    def of(cls, successes: int, trials: int) -> Proportion:
        """The proportion of successes in trials, with its interval; no value without trials."""
        if trials == 0:
            return cls(successes, trials, None, None, None)
        low, high = wilson_interval(successes, trials)
        return cls(successes, trials, successes / trials, low, high)

    def describe(self) -> str:
        """The value and its interval, as the audit's table prints it ("-" without trials)."""
        if self.value is None:
            return "-"
        return f"{self.value:.3f} ({self.low:.3f}-{self.high:.3f})"


@dataclass(frozen=True)
class Period:
    """The reads of one period, the figures they give, and whether a chart reached its limit there."""

    name: str  # 2026-W09, 2026-03, 2026-03-01 or "run 3"
    normal: int
    pneumonia: int
    sensitivity: Proportion
    specificity: Proportion
    ppv: Proportion
    out_of_scope: int  # of its reads, films the scope check set aside (judged by their score all the same)
    reached: dict[str, bool]  # per promised figure: did its chart reach its limit in this period


@dataclass(frozen=True)
class FigureTest:
    """One promised figure's CUSUM over the whole audit."""

    promised: Promised
    reads: int  # of its class
    failures: int
    failure_step: int  # the chart's integer steps (xscan.stats.cusum.Chart)
    success_step: int
    highest: int  # the chart's maximum over the reads
    limit: int  # the limit at its Holm level: reaching it is the alarm
    p_value: float
    level: float  # Holm's level for this figure
    broken: bool
    first_period: str  # where the chart first reached the limit ("" when it never did)
    reads_needed: int  # reads of its class that see a 10-point drop with chance POWER at level ALPHA / 2


@dataclass(frozen=True)
class Audit:
    """An audit of results against reads: periods, the figure tests, and every read left out, by why."""

    results: str
    reads_source: str
    key: str
    by: str
    periods: list[Period]
    tests: list[FigureTest]
    unmatched: list[str]  # keys of reads that matched no result
    not_scored: list[str]  # keys of reads whose file (or study) could not be scored
    contradicted: list[str]
    duplicated: list[str]
    notes: list[str] = field(default_factory=list)
    alpha: float = ALPHA
    power: float = POWER

    @property
    def verdict(self) -> str:
        """BROKEN, TOO_FEW or HOLDS (see the module's docstring)."""
        if any(test.broken for test in self.tests):
            return BROKEN
        return TOO_FEW if any(test.reads < test.reads_needed for test in self.tests) else HOLDS

    def summary(self) -> str:
        """One line: the verdict and what it rests on."""
        reads = sum(test.reads for test in self.tests)
        if self.verdict == BROKEN:
            broken = "; ".join(
                f"{t.promised.figure} below {t.promised.value:.3f} from {t.first_period} (p = {t.p_value:.2g})"
                for t in self.tests
                if t.broken
            )
            return f"audit: the promise is broken on {reads} reads: {broken}"
        if self.verdict == TOO_FEW:
            short = ", ".join(
                f"{t.reads_needed} {CLASS_WORDS[CLASS_OF[t.promised.figure]]} reads (have {t.reads})"
                for t in self.tests
                if t.reads < t.reads_needed
            )
            return (
                f"audit: too few reads to tell: {short} would detect a drop of 10 points with chance "
                f"{self.power:.0%} at level {self.alpha:.0%} (false alarms)"
            )
        return f"audit: the promise holds on {reads} reads (false alarms <= {self.alpha:.0%} while it holds)"

    def as_dict(self) -> dict[str, Any]:
        """The audit as JSON-ready values, with its verdict and summary line."""
        return asdict(self) | {"verdict": self.verdict, "summary": self.summary()}


def period_of(judged: Judged, by: str) -> str:
    """Give the period a judged read falls in: its read's day, ISO week or month, or the results' run.

    Args:
        judged: The read with the result it judges.
        by: One of PERIODS.

    Returns:
        The period's name.

    Raises:
        ValueError: `by` is not one of PERIODS.
    """
    moment = judged.read.read_at
    if by == "day":
        return moment.date().isoformat()
    if by == "week":
        year, week, _ = moment.isocalendar()
        return f"{year}-W{week:02d}"
    if by == "month":
        return f"{moment.year}-{moment.month:02d}"
    if by == "run":
        return f"run {judged.run or '?'}"
    raise ValueError(f"--by is one of {', '.join(PERIODS)}, not {by!r}")


def audit(
    matched: Matched,
    reads: Reads,
    promised: tuple[Promised, Promised],
    by: str = "week",
    results: str = "",
    alpha: float = ALPHA,
) -> Audit:
    """Audit matched reads against the promised figures, period by period.

    Args:
        matched: the reads with the results they judge (xscan.audit.reads.match_reads).
        reads: the reads file, for what it said about contradicting and duplicated reads.
        promised: the promised sensitivity and specificity.
        by: one of PERIODS.
        results: the results file's name, for the record.
        alpha: the chance of any false alarm while both promises hold.

    Returns:
        The periods, one CUSUM test per promised figure, and every read left out, by why.
    """
    judged = _in_order(matched.judged, by)
    periods_of = [period_of(item, by) for item in judged]
    watched = [_watch(promise, judged, periods_of) for promise in promised]
    p_values = [cusum.p_value(w.chart, w.highest, len(w.values)) for w in watched]
    levels, rejected = holm_levels(p_values, alpha), holm(p_values, alpha)
    tests = [_figure_test(*each, alpha) for each in zip(watched, p_values, levels, rejected, strict=True)]
    reached = {
        test.promised.figure: {period for period, value in zip(w.periods, w.values, strict=True) if value >= test.limit}
        for test, w in zip(tests, watched, strict=True)
    }
    periods = [
        _period(name, [j for j, p in zip(judged, periods_of, strict=True) if p == name], reached)
        for name in dict.fromkeys(periods_of)
    ]
    return Audit(
        results,
        reads.source,
        reads.key,
        by,
        periods,
        tests,
        [read.key for read in matched.unmatched],
        [read.key for read in matched.not_scored],
        reads.contradicted,
        reads.duplicated,
        _notes(judged),
        alpha,
    )


def _in_order(judged: list[Judged], by: str) -> list[Judged]:
    if by != "run":
        return sorted(judged, key=lambda j: (j.read.read_at, j.read.line))
    return sorted(judged, key=lambda j: (int(j.run) if j.run.isdigit() else -1, j.read.read_at, j.read.line))


@dataclass(frozen=True)
class _Watched:
    """One promised figure's chart over the reads of its class, in order."""

    promised: Promised
    chart: cusum.Chart
    failures: list[bool]
    values: np.ndarray  # the chart after each read
    periods: list[str]  # each read's period

    @property
    def highest(self) -> int:
        return int(self.values.max()) if len(self.values) else 0


def _watch(promise: Promised, judged: list[Judged], periods_of: list[str]) -> _Watched:
    truth = CLASS_OF[promise.figure]
    mine = [(j, p) for j, p in zip(judged, periods_of, strict=True) if j.read.label == truth]
    failures = [j.flagged != bool(truth) for j, _ in mine]
    chart = cusum.chart_for(promise.value)
    return _Watched(promise, chart, failures, cusum.path(chart, failures), [p for _, p in mine])


def _figure_test(watched: _Watched, p_value: float, level: float, rejected: bool, alpha: float) -> FigureTest:
    reads = len(watched.values)
    # With no reads nothing can reach a limit; 1 keeps an empty chart (at 0) below it.
    limit = cusum.control_limit(watched.chart, reads, level) if reads else 1
    first = next((p for p, v in zip(watched.periods, watched.values, strict=True) if v >= limit), "")
    return FigureTest(
        watched.promised,
        reads,
        sum(watched.failures),
        watched.chart.failure_step,
        watched.chart.success_step,
        watched.highest,
        limit,
        p_value,
        level,
        bool(rejected),
        first if rejected else "",
        cusum.reads_needed(watched.chart, alpha / len(CLASS_OF)),
    )


def _period(name: str, judged: list[Judged], reached: dict[str, set[str]]) -> Period:
    tp = sum(j.read.label == 1 and j.flagged for j in judged)
    fn = sum(j.read.label == 1 and not j.flagged for j in judged)
    tn = sum(j.read.label == 0 and not j.flagged for j in judged)
    fp = sum(j.read.label == 0 and j.flagged for j in judged)
    return Period(
        name,
        tn + fp,
        tp + fn,
        Proportion.of(tp, tp + fn),
        Proportion.of(tn, tn + fp),
        Proportion.of(tp, tp + fp),
        sum(bool(j.row.scope) for j in judged),
        {figure: name in periods for figure, periods in reached.items()},
    )


def _notes(judged: list[Judged]) -> list[str]:
    notes = []
    thresholds = sorted({round(j.row.threshold, 6) for j in judged})
    if len(thresholds) > 1:
        notes.append(
            f"the results hold {len(thresholds)} thresholds ({', '.join(map(str, thresholds))}): each read "
            "is judged at its own row's"
        )
    out_of_scope = sum(bool(j.row.scope) for j in judged)
    if out_of_scope:
        notes.append(
            f"{out_of_scope} of the {len(judged)} reads are of films the scope check set aside: they are judged by "
            "their score at the threshold, as the card's figures are"
        )
    return notes


def audit_results(
    results: Path,
    reads_file: Path,
    by: str = "week",
    calibration: Path | None = None,
    sensitivity: float | None = None,
    specificity: float | None = None,
    weights_dir: Path | None = None,
) -> Audit:
    """Audit a results file against a reads file, period by period, against the promise (see xscan.audit.promise).

    Args:
        results: a results CSV written by xscan score.
        reads_file: READS.csv (xscan.audit.reads).
        by: one of PERIODS.
        calibration: a SITE.json whose stated figures are the promise (after the options).
        sensitivity: the promised sensitivity, over any other.
        specificity: the promised specificity, over any other.
        weights_dir: the weights whose card states the promise otherwise (default: the bundled model).

    Returns:
        The audit.

    Raises:
        ReadsError: the reads file is empty or not a reads file.
        UsageError: `by` is not a period, the results are not a results file, the promise cannot be found.
    """
    if by not in PERIODS:
        raise UsageError(f"--by is one of {', '.join(PERIODS)}, not {by!r}")
    card = read_card(weights_dir or default_weights_dir())
    promised = promises(card, sensitivity, specificity, calibration)
    reads = read_reads(reads_file)
    try:
        matched = match_reads(reads, results)
    except OSError as error:
        raise UsageError(f"cannot read results file {results}: {error.strerror or error}") from None
    found = audit(matched, reads, promised, by, str(results))
    if calibration is None:
        return found
    site_model = load_site(calibration, card.model_id).model_id()
    models = sorted({item.row.model for item in matched.judged} - {site_model})
    if not models:
        return found
    note = (
        f"the results were not scored with {calibration} (model {', '.join(models)}, not {site_model}): its promise "
        "is about its own threshold; score with --calibration to audit it"
    )
    return replace(found, notes=[*found.notes, note])
