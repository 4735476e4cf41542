"""Making probabilities mean something: temperature scaling, threshold choice, calibration error."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import brier_score_loss, log_loss, roc_curve


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimizes the log-loss of sigmoid(logit / T) on LABELS."""

    def loss(log_t: float) -> float:
        probability = 1.0 / (1.0 + np.exp(-logits / np.exp(log_t)))
        return log_loss(labels, np.clip(probability, 1e-7, 1 - 1e-7), labels=[0, 1])

    result = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def threshold_for_sensitivity(probabilities: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity (recall of PNEUMONIA) is at least TARGET.

    The highest such threshold keeps the most specificity; on shifted data the model tends to
    call normal scans pneumonia, so spending the sensitivity margin on specificity is the point.
    """
    _, tpr, thresholds = roc_curve(labels, probabilities, drop_intermediate=False)
    reaching = np.flatnonzero(tpr >= target)
    threshold = float(thresholds[reaching[0]])
    return min(threshold, 1.0)


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
