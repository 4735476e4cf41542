"""The Bernoulli CUSUM against hand-worked cases: its integer steps, its path, exact chances of an alarm, its limit."""

import math

import numpy as np
import pytest

from xscan.stats import cusum

# A promised figure of 0.9: failure rate p0 = 0.1, tuned to p1 = 0.2. A failure's log-likelihood ratio is
# log(0.2 / 0.1) = 0.6931, a success's log(0.8 / 0.9) = -0.11778; in tenths of a success: 58.85, so 59 and 10.
CHART = cusum.chart_for(0.9)


def test_the_steps_are_the_log_likelihood_ratios_in_integer_units():
    assert (CHART.failure_step, CHART.success_step) == (59, 10)
    assert CHART.rate == pytest.approx(0.1) and CHART.shifted == pytest.approx(0.2)
    assert CHART.unit == pytest.approx(-math.log(0.8 / 0.9) / 10)


def test_a_promise_of_one_is_a_small_failure_rate_not_a_division_by_zero():
    chart = cusum.chart_for(1.0)
    assert chart.rate == cusum.LOWEST_RATE and chart.failure_step > 100 * chart.success_step / 3
    with pytest.raises(ValueError):
        cusum.chart_for(0.0)


def test_the_path_adds_steps_and_restarts_at_zero():
    # F: 59; S: 49; S: 39; F: 98; then eight successes take it to 18 and then to 0, where it stays.
    failures = [True, False, False, True] + [False] * 9
    assert cusum.path(CHART, failures).tolist() == [59, 49, 39, 98, 88, 78, 68, 58, 48, 38, 28, 18, 8]
    assert cusum.path(CHART, [False, False, True]).tolist() == [0, 0, 59]


def test_the_chance_of_reaching_a_limit_is_exact():
    p = 0.1
    # Within two reads, 60 needs two failures: p^2. 59 needs one: 1 - (1 - p)^2.
    assert cusum.reaching(CHART, 60, 2, p) == pytest.approx(p**2)
    assert cusum.reaching(CHART, 59, 2, p) == pytest.approx(1 - (1 - p) ** 2)
    # Within three reads, 110: FF (118) or SFF (0, 59, 118); FSF only gets to 108.
    assert cusum.reaching(CHART, 110, 3, p) == pytest.approx(p**2 + (1 - p) * p**2)
    assert cusum.reaching(CHART, 108, 3, p) == pytest.approx(p**2 + (1 - p) * p**2 + p * (1 - p) * p)
    assert cusum.reaching(CHART, 0, 3, p) == 1.0


def test_the_limit_is_the_lowest_that_keeps_the_level():
    # Two reads: any limit up to 59 is reached with chance 0.19, 60 to 118 with 0.01.
    assert cusum.control_limit(CHART, 2, 0.05) == 60
    assert cusum.control_limit(CHART, 2, 0.2) == 1
    assert cusum.p_value(CHART, 98, 2) == pytest.approx(0.01)
    assert cusum.p_value(CHART, 0, 2) == 1.0


def test_at_the_promise_the_chart_alarms_no_more_often_than_the_level():
    reads, level = 150, 0.05
    limit = cusum.control_limit(CHART, reads, level)
    rng = np.random.default_rng(5)
    alarms = np.mean([cusum.path(CHART, rng.random(reads) < CHART.rate).max() >= limit for _ in range(4000)])
    exact = cusum.reaching(CHART, limit, reads, CHART.rate)
    assert exact <= level < cusum.reaching(CHART, limit - 1, reads, CHART.rate)  # the lowest such limit
    assert alarms == pytest.approx(exact, abs=4 * math.sqrt(level * (1 - level) / 4000))


def test_reads_needed_is_where_the_power_is_first_reached():
    chart = cusum.chart_for(0.961)
    needed = cusum.reads_needed(chart, 0.025)
    assert cusum.power(chart, needed, 0.025) >= 0.8 > cusum.power(chart, needed - 1, 0.025)
    assert cusum.reads_needed(chart, 0.025, 0.9) > needed  # more power needs more reads
    assert cusum.reads_needed(chart, 0.025, most=20) == 20  # never reached below the cap
