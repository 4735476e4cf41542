"""Thresholds with a stated guarantee on new scans from one class's scores: the order statistic, the count, the range.

The threshold is the r-th lowest of n scores of the class to catch (pneumonia), and a new scan is
caught when its score is at or above it. For scores exchangeable with new ones, the share of new
scans missed (the miss rate) is then distributed as Beta(r, n + 1 - r), whatever the scores'
distribution. Two rules pick r for a target share S caught:

- expected: split-conformal (Angelopoulos & Bates, "A Gentle Introduction to Conformal Prediction",
  arXiv 2107.07511, section 3): r = floor((1 - S)(n + 1)), so that the expected miss rate
  r / (n + 1) is at most 1 - S;
- with confidence C: the Neyman-Pearson umbrella rule (Tong, Feng & Li, Science Advances 2018): the
  largest r with P(Beta(r, n + 1 - r) > 1 - S) = sum_{j<r} C(n, j) (1 - S)^j S^(n - j) <= 1 - C.

Rank 0 means the rule cannot keep its promise with n scores.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy.stats import beta, binom

RANGE_QUANTILES = (0.05, 0.95)  # the range of the share caught that a site can expect, as miss-rate quantiles


def _miss_share(target: float) -> Fraction:
    """Give 1 - `target` exactly as written (0.95 -> 1/20): floor((1 - S)(n + 1)) then loses no integer to rounding."""
    if not 0 < target < 1:
        raise ValueError(f"the target share must be between 0 and 1 (exclusive), not {target}")
    return 1 - Fraction(str(target))


def conformal_rank(n: int, target: float) -> int:
    """Give the split-conformal rank, floor((1 - target)(n + 1)): its expected share caught is at least the target.

    Args:
        n: The number of scores.
        target: The share to catch.

    Returns:
        The rank; 0 with too few scores.

    Raises:
        ValueError: The target is not between 0 and 1.
    """
    return math.floor(_miss_share(target) * (n + 1))


def umbrella_rank(n: int, target: float, confidence: float) -> int:
    """Give the umbrella rule's rank: the largest r with P(Binomial(n, 1 - target) < r) <= 1 - confidence.

    At that rank the share caught is at least the target with probability at least the confidence.

    Args:
        n: The number of scores.
        target: The share to catch.
        confidence: The probability of catching it.

    Returns:
        The rank; 0 with too few scores.

    Raises:
        ValueError: The target or the confidence is not between 0 and 1.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"the confidence must be between 0 and 1 (exclusive), not {confidence}")
    _miss_share(target)
    below = binom.cdf(np.arange(n), n, 1 - target)  # below[r - 1] = P(Binomial < r), increasing in r
    return int(np.count_nonzero(below <= 1 - confidence))


def rank(n: int, target: float, confidence: float | None = None) -> int:
    """Give the rule's rank: split-conformal without a confidence, the umbrella rule with one.

    Args:
        n: The number of scores.
        target: The share to catch.
        confidence: The umbrella rule's confidence, or None.

    Returns:
        The rank; 0 with too few scores.

    Raises:
        ValueError: The target or the confidence is not between 0 and 1.
    """
    return conformal_rank(n, target) if confidence is None else umbrella_rank(n, target, confidence)


def scores_needed(target: float, confidence: float | None = None) -> int:
    """Count the fewest scores for which the rule's rank is at least 1.

    Split-conformal: n >= 1 / (1 - S) - 1 (19 for S = 0.95). Umbrella: S^n <= 1 - C,
    n >= ln(1 - C) / ln S (59 for S = C = 0.95); the logarithms give the start, the rule itself has
    the last word.

    Args:
        target: The share to catch, S.
        confidence: The umbrella rule's confidence C, or None.

    Returns:
        The number of scores.

    Raises:
        ValueError: The target is not between 0 and 1.
    """
    if confidence is None:
        return math.ceil(1 / _miss_share(target)) - 1
    n = max(1, math.ceil(math.log(1 - confidence) / math.log(target)))
    while umbrella_rank(n, target, confidence) < 1:
        n += 1
    while n > 1 and umbrella_rank(n - 1, target, confidence) >= 1:
        n -= 1
    return n


def threshold_at_rank(scores: np.ndarray, rank: int) -> float:
    """Give the threshold at a rank: at or above it is caught, so ties at it are caught.

    Args:
        scores: The class's scores.
        rank: 1 for the lowest.

    Returns:
        The rank-th lowest score.

    Raises:
        ValueError: The rank is outside 1..len(scores).
    """
    if not 1 <= rank <= len(scores):
        raise ValueError(f"rank {rank} is outside 1..{len(scores)}")
    return float(np.sort(np.asarray(scores, np.float64))[rank - 1])


def caught_range(n: int, rank: int) -> tuple[float, float, float]:
    """Give the share of new scans a threshold at a rank catches: expected, and its range.

    The miss rate is Beta(rank, n + 1 - rank): its mean is rank / (n + 1), and its upper quantile is
    the low end of the share caught.

    Args:
        n: The number of scores.
        rank: The threshold's rank, 1 for the lowest.

    Returns:
        (expected, low, high): low-high spans RANGE_QUANTILES.

    Raises:
        ValueError: The rank is outside 1..n.
    """
    if not 1 <= rank <= n:
        raise ValueError(f"rank {rank} is outside 1..{n}")
    miss = beta(rank, n + 1 - rank)
    low_quantile, high_quantile = RANGE_QUANTILES
    return 1 - rank / (n + 1), float(1 - miss.ppf(high_quantile)), float(1 - miss.ppf(low_quantile))
