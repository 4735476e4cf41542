"""Binary classification metrics at a threshold, from scikit-learn; shared by train and report."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def rates(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """Sensitivity, specificity, precision, NPV, F1, accuracy and balanced accuracy from the four counts."""
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
    """Counts and rates for PNEUMONIA (1) vs NORMAL (0) at THRESHOLD (probability >= threshold)."""
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
