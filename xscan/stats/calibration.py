"""Making probabilities mean something: Platt scaling, threshold choice, calibration error."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import brier_score_loss, roc_curve


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Temperature T and bias b such that sigmoid(logit / T + b) fits LABELS best (log-loss).

    Platt scaling: a one-feature logistic regression on the logit. Temperature alone rescales
    the logits but cannot move them; training with class weights and heavy augmentation leaves
    them shifted, and only the bias term takes that out.
    """
    scale, bias = fit_logistic(logits, labels)
    if scale <= 0:
        raise ValueError("the logits do not rank the classes the right way round; nothing to calibrate")
    return 1.0 / scale, bias


def fit_logistic(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Slope a and intercept b of the logistic regression sigmoid(a * logit + b) on LABELS, unregularized in effect (C=1e6)."""
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(C=1e6).fit(np.asarray(logits, np.float64).reshape(-1, 1), labels)
    return float(fitted.coef_[0, 0]), float(fitted.intercept_[0])


def threshold_for_sensitivity(probabilities: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity (recall of PNEUMONIA) is at least TARGET.

    The highest such threshold keeps the most specificity; on shifted data the model tends to
    call normal scans pneumonia, so spending the sensitivity margin on specificity is the point.
    """
    _, tpr, thresholds = roc_curve(labels, probabilities, drop_intermediate=False)
    reaching = np.flatnonzero(tpr >= target)
    return _clipped(thresholds[reaching[0]])


def threshold_for_specificity(probabilities: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The lowest threshold whose specificity is at least TARGET: the most sensitive confirming threshold."""
    fpr, _, thresholds = roc_curve(labels, probabilities, drop_intermediate=False)
    allowed = np.flatnonzero(fpr <= 1 - target + 1e-12)
    return _clipped(thresholds[allowed[-1]])


def youden_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The threshold maximizing sensitivity + specificity - 1 (Youden's J)."""
    fpr, tpr, thresholds = roc_curve(labels, probabilities, drop_intermediate=False)
    return _clipped(thresholds[int(np.argmax(tpr - fpr))])


def _clipped(threshold: float) -> float:
    # roc_curve's first threshold is +inf ("flag nothing"); a probability never exceeds 1.
    return min(float(threshold), 1.0)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width probability bins, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(labels[members].mean() - probabilities[members].mean())
    return float(error)


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(brier_score_loss(labels, probabilities))
