"""The one-sided Bernoulli CUSUM: is a promised rate of correct calls still kept, read by read, with exact false alarms.

Each read of one class is a success (the model's call agrees with the radiologist) or a failure.
The promise is a failure rate p0 (1 - the promised sensitivity or specificity); the chart is tuned
to a failure rate p1 = p0 + DROP. Page's CUSUM (Page, Biometrika 41, 1954) adds each read's
log-likelihood ratio log(p1 / p0) for a failure, log((1 - p1) / (1 - p0)) for a success, and
restarts at zero whenever the sum falls below it; it alarms when the sum reaches a control
limit. As Reynolds & Stoumbos (J. Qual. Technol. 31, 1999) do for the Bernoulli CUSUM, the two
steps are rounded to integers in a fixed ratio (a success counts -SUCCESS_STEP, a failure a whole
multiple of it), so the chart takes integer values and its chance of reaching a limit within n
reads is computed exactly with a Markov chain (Brook & Evans, Biometrika 59, 1972), not simulated.

The limit is set for the audit's horizon, the reads there are: the chance that a chart of
n reads whose true failure rate is p0 (or less) ever reaches it is at most the level. That is the
correction for looking at every read (and so every period): one test of the whole path, whose
p-value is the chance of a maximum at least as high as the one observed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

DROP = 0.10  # the chart is tuned to a promised figure 10 points lower, the drop the audit must see
SUCCESS_STEP = 10  # a success's integer step; a failure's is its log-likelihood ratio in these units, rounded
LOWEST_RATE = 1e-3  # a promise of 1.0 (no failures ever) is tested as a failure rate of 0.1 %


@dataclass(frozen=True)
class Chart:
    """A Bernoulli CUSUM for failure rate RATE (the promise) against RATE + DROP, on integer steps."""

    rate: float  # p0: the promised failure rate, 1 - the promised figure
    shifted: float  # p1: the failure rate the chart is tuned to
    failure_step: int  # added for a failure
    success_step: int  # taken off for a success (the chart never goes below 0)

    @property
    def unit(self) -> float:
        """The log-likelihood ratio one integer step stands for."""
        return -math.log((1 - self.shifted) / (1 - self.rate)) / self.success_step


def chart_for(promised: float, drop: float = DROP) -> Chart:
    """The chart that watches a PROMISED figure (sensitivity or specificity) for a fall by DROP."""
    if not 0.0 < promised <= 1.0:
        raise ValueError(f"a promised figure is in (0, 1], not {promised}")
    rate = max(1.0 - promised, LOWEST_RATE)
    shifted = min(rate + drop, 1.0 - LOWEST_RATE)
    failure = math.log(shifted / rate)
    success = -math.log((1 - shifted) / (1 - rate))
    return Chart(rate, shifted, max(1, round(SUCCESS_STEP * failure / success)), SUCCESS_STEP)


def path(chart: Chart, failures: Sequence[bool]) -> np.ndarray:
    """The chart's value after each read (FAILURES in read order): S_t = max(0, S_(t-1) + step), S_0 = 0."""
    values = np.zeros(len(failures), np.int64)
    value = 0
    for index, failed in enumerate(failures):
        value = max(0, value + (chart.failure_step if failed else -chart.success_step))
        values[index] = value
    return values


def reaching(chart: Chart, limit: int, reads: int, rate: float) -> float:
    """The chance that the chart reaches LIMIT within READS reads whose failure rate is RATE (exact).

    The chart below LIMIT is a Markov chain on 0 .. LIMIT - 1; the mass that reaches LIMIT stays there.
    """
    if limit <= 0:
        return 1.0
    return float(_reaching(chart.failure_step, chart.success_step, limit, reads, rate))


@lru_cache(maxsize=4096)
def _reaching(failure_step: int, success_step: int, limit: int, reads: int, rate: float) -> float:
    below, after = np.zeros(limit), np.zeros(limit)
    below[0] = 1.0
    reached = 0.0
    down = max(limit - success_step, 1)  # the states a success leaves at or above 1
    up = max(limit - failure_step, 0)  # the lowest state a failure takes to the limit
    for _ in range(reads):
        reached += below[up:].sum() * rate  # a failure: up by failure_step; what reaches the limit stays there
        after[0] = below[: success_step + 1].sum() * (1 - rate)  # a success: down by success_step, never below 0
        np.multiply(below[success_step + 1 :], 1 - rate, out=after[1:down])
        after[down:] = 0.0
        after[failure_step:] += below[:up] * rate
        below, after = after, below
    return reached


def control_limit(chart: Chart, reads: int, level: float) -> int:
    """The lowest integer limit that a chart of READS reads at the promised rate reaches with chance at most LEVEL."""
    low, high = 1, chart.failure_step * max(reads, 1) + 1  # the chart cannot exceed a failure on every read
    while low < high:
        middle = (low + high) // 2
        if reaching(chart, middle, reads, chart.rate) <= level:
            high = middle
        else:
            low = middle + 1
    return low


def p_value(chart: Chart, highest: int, reads: int) -> float:
    """The chance that a chart of READS reads at the promised rate reaches HIGHEST, the maximum observed (1 at 0)."""
    return reaching(chart, highest, reads, chart.rate) if highest > 0 else 1.0


def power(chart: Chart, reads: int, level: float, rate: float | None = None) -> float:
    """The chance that READS reads at failure RATE (default the tuned one) reach the limit set for READS at LEVEL."""
    return reaching(chart, control_limit(chart, reads, level), reads, chart.shifted if rate is None else rate)


def reads_needed(chart: Chart, level: float, wanted: float = 0.8, most: int = 100_000) -> int:
    """The fewest reads of one class at which a fall by DROP is seen with chance WANTED at LEVEL (MOST if never).

    Power is not monotone in the reads, step by step (the limit is an integer): this is the first
    count from which it is reached, found by doubling, then bisection.
    """
    high = 8
    while power(chart, high, level) < wanted:
        if high >= most:
            return most
        high = min(high * 2, most)
    low = high // 2
    while low + 1 < high:
        middle = (low + high) // 2
        if power(chart, middle, level) >= wanted:
            high = middle
        else:
            low = middle
    return high
