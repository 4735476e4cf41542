"""Binary classification metrics at a threshold, from scikit-learn; shared by train and report."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def rates(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """Compute the rates from the four counts of a confusion matrix.

    Args:
        tp: True positives.
        fp: False positives.
        tn: True negatives.
        fn: False negatives.

    Returns:
        Sensitivity, specificity, precision, NPV, F1, accuracy and balanced accuracy; nan where a
        denominator is 0.
    """
    sensitivity = _ratio(tp, tp + fn)
    specificity = _ratio(tn, tn + fp)
    return {
        "sensitivity": sensitivity,
        "specificity": specificity,
        "precision": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
        "balanced_accuracy": (sensitivity + specificity) / 2,
    }


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    """Compute counts and rates for PNEUMONIA (1) vs NORMAL (0) at a threshold.

    Args:
        labels: 0/1 ground truth.
        probabilities: The probabilities of pneumonia.
        threshold: A probability at or above it is called PNEUMONIA.

    Returns:
        n, tp, fp, tn, fn, the threshold, the `rates`, ROC AUC and average precision (nan with one class).
    """
    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    predicted = (probabilities >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(labels, predicted, labels=[0, 1]).ravel())
    both_classes = len(np.unique(labels)) == 2
    return {
        "n": int(labels.size),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "threshold": float(threshold),
        **rates(tp, fp, tn, fn),
        "auc": float(roc_auc_score(labels, probabilities)) if both_classes else float("nan"),
        "average_precision": float(average_precision_score(labels, probabilities)) if both_classes else float("nan"),
    }
