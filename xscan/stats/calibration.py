"""Making probabilities mean something: Platt scaling, threshold choice, calibration error."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import brier_score_loss, roc_curve


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Fit Platt scaling: a temperature T and bias b such that sigmoid(logit / T + b) fits the labels best (log-loss).

    A one-feature logistic regression on the logit. Temperature alone rescales the logits but
    cannot move them; training with class weights and heavy augmentation leaves them shifted, and
    only the bias term takes that out.

    Args:
        logits: The model's logits.
        labels: 0/1 ground truth.

    Returns:
        (T, b).

    Raises:
        ValueError: The logits rank the classes the wrong way round.
    """
    scale, bias = fit_logistic(logits, labels)
    if scale <= 0:
        raise ValueError("the logits do not rank the classes the right way round; nothing to calibrate")
    return 1.0 / scale, bias


def fit_logistic(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Fit the logistic regression sigmoid(a * logit + b), unregularized in effect (C=1e6).

    Args:
        logits: The model's logits.
        labels: 0/1 ground truth.

    Returns:
        The slope a and intercept b.
    """
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(C=1e6).fit(np.asarray(logits, np.float64).reshape(-1, 1), labels)
    return float(fitted.coef_[0, 0]), float(fitted.intercept_[0])


def threshold_for_sensitivity(probabilities: np.ndarray, labels: np.ndarray, target: float) -> float:
    """Find the highest threshold whose sensitivity (recall of PNEUMONIA) is at least the target.

    The highest such threshold keeps the most specificity; on shifted data the model tends to
    call normal scans pneumonia, so spending the sensitivity margin on specificity is the point.

    Args:
        probabilities: The rows' probabilities.
        labels: 0/1 ground truth.
        target: The sensitivity to reach.

    Returns:
        The threshold, at most 1.
    """
    _, tpr, thresholds = roc_curve(labels, probabilities, drop_intermediate=False)
    reaching = np.flatnonzero(tpr >= target)
    return _clipped(thresholds[reaching[0]])


def threshold_for_specificity(probabilities: np.ndarray, labels: np.ndarray, target: float) -> float:
    """Find the lowest threshold whose specificity is at least the target: the most sensitive confirming one.

    Args:
        probabilities: The rows' probabilities.
        labels: 0/1 ground truth.
        target: The specificity to reach.

    Returns:
        The threshold, at most 1.
    """
    fpr, _, thresholds = roc_curve(labels, probabilities, drop_intermediate=False)
    allowed = np.flatnonzero(fpr <= 1 - target + 1e-12)
    return _clipped(thresholds[allowed[-1]])


def youden_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Find the threshold maximizing sensitivity + specificity - 1 (Youden's J).

    Args:
        probabilities: The rows' probabilities.
        labels: 0/1 ground truth.

    Returns:
        The threshold, at most 1.
    """
    fpr, tpr, thresholds = roc_curve(labels, probabilities, drop_intermediate=False)
    return _clipped(thresholds[int(np.argmax(tpr - fpr))])


def _clipped(threshold: float) -> float:
    # roc_curve's first threshold is +inf ("flag nothing"); a probability never exceeds 1.
    return min(float(threshold), 1.0)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Measure the expected calibration error: mean |accuracy - confidence| over equal-width bins, weighted by size.

    Args:
        probabilities: The rows' probabilities.
        labels: 0/1 ground truth.
        bins: Equal-width probability bins over [0, 1].

    Returns:
        The error.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(labels[members].mean() - probabilities[members].mean())
    return float(error)


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Measure the Brier score: the mean squared difference between probability and outcome.

    Args:
        probabilities: The rows' probabilities.
        labels: 0/1 ground truth.

    Returns:
        The score.
    """
    return float(brier_score_loss(labels, probabilities))
