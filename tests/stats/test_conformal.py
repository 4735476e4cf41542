"""Threshold ranks with a guarantee: hand-worked order statistics, the scores each rule needs, the Beta range."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta

from xscan.stats.conformal import caught_range, conformal_rank, rank, scores_needed, threshold_at_rank, umbrella_rank


def _binomial_below(r: int, n: int, miss: float) -> float:
    """P(Binomial(n, miss) < r), summed term by term: the issue's formula, independent of scipy."""
    return sum(math.comb(n, j) * miss**j * (1 - miss) ** (n - j) for j in range(r))


@pytest.mark.parametrize(
    ("n", "target", "rank"),
    [
        (20, 0.95, 1),  # 0.05 * 21 = 1.05 -> 1: the lowest pneumonia score
        (19, 0.95, 1),  # 0.05 * 20 = 1 exactly -> 1
        (18, 0.95, 0),  # 0.05 * 19 = 0.95 -> 0: too few
        (9, 0.9, 1),  # 0.1 * 10 = 1 exactly; in floating point (1 - 0.9) * 10 = 0.9999999999999998, which would refuse
        (40, 0.9, 4),  # 0.1 * 41 = 4.1 -> 4
        (100, 0.98, 2),  # 0.02 * 101 = 2.02 -> 2
    ],
)
def test_conformal_rank_is_floor_of_miss_share_times_n_plus_one(n, target, rank):
    assert conformal_rank(n, target) == rank


def test_threshold_is_the_rank_th_lowest_score():
    scores = np.array([0.9, 0.2, 0.7, 0.4, 0.4, 0.8])
    assert threshold_at_rank(scores, 1) == 0.2
    assert (
        threshold_at_rank(scores, 2) == 0.4 and threshold_at_rank(scores, 3) == 0.4
    )  # ties: both 0.4s caught either way
    assert threshold_at_rank(scores, 4) == 0.7
    with pytest.raises(ValueError):
        threshold_at_rank(scores, 0)


def test_umbrella_rank_by_hand():
    # n = 59, S = C = 0.95: P(Bin = 0) = 0.95^59 = 0.0485 <= 0.05,
    # P(Bin <= 1) = 0.0485 + 59 * 0.05 * 0.95^58 = 0.199 > 0.05: r = 1.
    assert _binomial_below(1, 59, 0.05) == pytest.approx(0.95**59) and 0.048 < 0.95**59 < 0.05
    assert 0.19 < _binomial_below(2, 59, 0.05) < 0.21
    assert umbrella_rank(59, 0.95, 0.95) == 1
    # n = 58: 0.95^58 = 0.0510 > 0.05, so not even the lowest score keeps the promise.
    assert umbrella_rank(58, 0.95, 0.95) == 0
    # n = 100, S = C = 0.9: P(Bin(100, 0.1) <= 5) = 0.058 <= 0.1 < P(<= 6) = 0.117: r = 6.
    assert _binomial_below(6, 100, 0.1) <= 0.1 < _binomial_below(7, 100, 0.1)
    assert umbrella_rank(100, 0.9, 0.9) == 6
    # The rule is the largest r the sum allows, for a spread of cases.
    for n, target, confidence in [(200, 0.95, 0.95), (80, 0.9, 0.8), (300, 0.98, 0.9)]:
        r = umbrella_rank(n, target, confidence)
        assert _binomial_below(r, n, 1 - target) <= 1 - confidence < _binomial_below(r + 1, n, 1 - target)


def test_umbrella_rank_never_exceeds_the_conformal_rank():
    # Promising the sensitivity with confidence costs ranks: the threshold is lower than the expected-value rule's.
    for n in (60, 100, 200, 500):
        assert umbrella_rank(n, 0.95, 0.95) <= conformal_rank(n, 0.95)


def test_scores_needed():
    assert scores_needed(0.95) == 19  # n >= 1 / 0.05 - 1
    assert scores_needed(0.9) == 9
    assert scores_needed(0.98) == 49
    # n >= ln(1 - C) / ln S = ln 0.05 / ln 0.95 = 58.4: 59.
    assert math.log(0.05) / math.log(0.95) == pytest.approx(58.4, abs=0.05)
    assert scores_needed(0.95, 0.95) == 59
    assert scores_needed(0.9, 0.9) == 22  # ln 0.1 / ln 0.9 = 21.85
    for target, confidence in [(0.95, None), (0.9, 0.95), (0.98, 0.9)]:
        needed = scores_needed(target, confidence)
        assert rank(needed, target, confidence) == 1 and rank(needed - 1, target, confidence) == 0


def test_targets_outside_zero_one_are_refused():
    with pytest.raises(ValueError, match="between 0 and 1"):
        conformal_rank(50, 1.0)
    with pytest.raises(ValueError, match="confidence"):
        umbrella_rank(50, 0.9, 1.0)


def test_caught_range_is_one_minus_the_beta_quantiles():
    # Rank 1 of n: the miss rate is Beta(1, n), whose q-quantile is 1 - (1 - q)^(1/n).
    expected, low, high = caught_range(20, 1)
    assert expected == pytest.approx(20 / 21)
    assert low == pytest.approx((1 - 0.95) ** (1 / 20))
    assert high == pytest.approx((1 - 0.05) ** (1 / 20))
    expected, low, high = caught_range(194, 5)
    assert (low, high) == pytest.approx((1 - beta.ppf(0.95, 5, 190), 1 - beta.ppf(0.05, 5, 190)))
    assert low < expected < high


def test_the_rules_keep_their_promises_on_simulated_samples():
    # Uniform scores: the share of new scans missed at threshold t is t itself, so each draw's sensitivity is 1 - t.
    rng = np.random.default_rng(0)
    draws = np.sort(rng.uniform(size=(20000, 20)), axis=1)
    rank = conformal_rank(20, 0.95)
    sensitivity = 1 - draws[:, rank - 1]
    assert sensitivity.mean() >= 0.95 - 0.002  # expected 20/21 = 0.952
    _, low, high = caught_range(20, rank)
    assert np.mean(sensitivity < low) == pytest.approx(0.05, abs=0.01)
    assert np.mean(sensitivity > high) == pytest.approx(0.05, abs=0.01)

    draws = np.sort(rng.uniform(size=(20000, 59)), axis=1)
    reached = 1 - draws[:, umbrella_rank(59, 0.95, 0.95) - 1] >= 0.95
    assert reached.mean() >= 0.95 - 0.005  # exactly 1 - 0.95^59 = 0.9515
