"""95 % intervals: Wilson's for proportions of counts, the percentile bootstrap for everything else."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sklearn
from sklearn.metrics import auc, average_precision_score, roc_curve

from xscan.stats.metrics import rates

Z_95 = 1.959963984540054  # standard normal quantile of 0.975: two-sided 95 %

# Each proportion as (successes, trials) from the confusion-matrix counts; these get Wilson intervals.
PROPORTIONS: dict[str, Callable[[dict[str, float]], tuple[int, int]]] = {
    "sensitivity": lambda m: (m["tp"], m["tp"] + m["fn"]),
    "specificity": lambda m: (m["tn"], m["tn"] + m["fp"]),
    "precision": lambda m: (m["tp"], m["tp"] + m["fp"]),
    "npv": lambda m: (m["tn"], m["tn"] + m["fn"]),
    "accuracy": lambda m: (m["tp"] + m["tn"], m["n"]),
}
# Not proportions of one count: these get percentile bootstrap intervals.
BOOTSTRAPPED = ("f1", "balanced_accuracy", "auc", "average_precision")


@dataclass(frozen=True)
class Interval:
    """A 95 % interval and how it was made."""

    low: float
    high: float
    method: str  # "wilson" or "bootstrap"


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Give the Wilson score interval of a proportion.

    Args:
        successes: The count.
        trials: Out of how many.
        z: The normal quantile of the coverage (Z_95 for 95 %).

    Returns:
        (low, high); (nan, nan) when there are no trials.
    """
    if trials == 0:
        return float("nan"), float("nan")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # At 0 or all successes the bound is exactly 0 or 1; rounding would leave 1e-16 off.
    return (0.0 if successes == 0 else centre - half), (1.0 if successes == trials else centre + half)


def bootstrap_intervals(
    truth: np.ndarray, probabilities: np.ndarray, threshold: float, resamples: int, seed: int
) -> tuple[dict[str, Interval], int]:
    """Give percentile 95 % intervals of the BOOTSTRAPPED metrics over resamples of the rows.

    A resample holding one class only has no AUC and is skipped.

    Args:
        truth: 0/1 ground truth of the rows.
        probabilities: The rows' probabilities.
        threshold: The threshold F1 and balanced accuracy are measured at.
        resamples: How many resamples to draw.
        seed: The random generator's seed.

    Returns:
        The interval of each metric (nan where no resample was used), and the count of resamples used.
    """
    rng = np.random.default_rng(seed)
    predicted = (probabilities >= threshold).astype(int)
    draws: dict[str, list[float]] = {name: [] for name in BOOTSTRAPPED}
    # Input validation costs more than the metrics on a few hundred rows; the inputs were checked once already.
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        for _ in range(resamples):
            chosen = rng.integers(0, truth.size, truth.size)
            if truth[chosen].min() == truth[chosen].max():
                continue
            for name, value in _resampled_metrics(truth[chosen], probabilities[chosen], predicted[chosen]).items():
                draws[name].append(value)
    used = len(draws["auc"])
    intervals = {
        name: Interval(*(float(q) for q in np.percentile(values, [2.5, 97.5])), "bootstrap")
        if used
        else Interval(float("nan"), float("nan"), "bootstrap")
        for name, values in draws.items()
    }
    return intervals, used


def _resampled_metrics(truth: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    tn, fp, fn, tp = np.bincount(2 * truth + predicted, minlength=4)
    fpr, tpr, _ = roc_curve(truth, probabilities)
    counted = rates(int(tp), int(fp), int(tn), int(fn))
    return {
        "f1": counted["f1"],
        "balanced_accuracy": counted["balanced_accuracy"],
        "auc": float(auc(fpr, tpr)),  # what roc_auc_score computes, with half its overhead
        "average_precision": float(average_precision_score(truth, probabilities)),
    }
