"""A site's own operating point: threshold and calibration refitted on a few labelled local scans (SITE.json).

The bundled model's ranking travels between hospitals better than its threshold and its
probabilities do. A site scores a labelled local sample with the bundled model, and
`fit_site_calibration` chooses a threshold that reaches the target sensitivity on it and refits
the calibration: always the intercept (the site's prevalence), the slope too when each class
has at least SLOPE_MIN_PER_CLASS scans. Scoring with the file maps each base probability p to
sigmoid(slope * logit(p) + intercept) and compares that with the site threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from xscan.model.site_calibration import MODEL_SEPARATOR, SiteCalibration, SiteCalibrationError, clipped_logit
from xscan.reporting.labels import GroundTruth
from xscan.scoring.results import Row
from xscan.stats.calibration import fit_logistic, threshold_for_sensitivity
from xscan.stats.intervals import PROPORTIONS, wilson_interval
from xscan.stats.metrics import binary_metrics

MIN_PER_CLASS = 20  # fewer labelled scans of either class and no threshold is chosen
SLOPE_MIN_PER_CLASS = 100  # from this many of each class, the slope is refitted as well as the intercept
CROSS_CHECK_FOLDS = 5


@dataclass(frozen=True)
class LabelledRows:
    """The rows a calibration may use, and what was left out and why."""

    probabilities: np.ndarray
    truth: np.ndarray
    base_model: str
    left_out: dict[str, list[str]]  # reason -> paths


def select_rows(rows: Sequence[Row], truth_of: GroundTruth) -> LabelledRows:
    """Rows with ground truth, a probability and no error; the others are counted by reason."""
    left_out: dict[str, list[str]] = {}
    kept: list[tuple[float, int]] = []
    models = {row.model for row in rows}
    if len(models) > 1:
        raise SiteCalibrationError(f"the results hold rows of {len(models)} models ({', '.join(sorted(models))}); use one model's rows")
    model = models.pop() if models else ""
    if MODEL_SEPARATOR in model:
        raise SiteCalibrationError(f"the results were scored with a site calibration ({model}); "
                                   "calibrate from results scored without --calibration")
    for row in rows:
        label = truth_of(row.path)
        reason = (
            "error" if row.error or row.probability is None
            else "out of scope" if row.scope
            else "no ground truth" if label is None
            else ""
        )
        if reason:
            left_out.setdefault(reason, []).append(row.path)
        else:
            kept.append((float(row.probability), int(label)))
    probabilities = np.array([p for p, _ in kept], dtype=np.float64)
    truth = np.array([t for _, t in kept], dtype=int)
    return LabelledRows(probabilities, truth, model, left_out)


def fit_site_calibration(
    labelled: LabelledRows, target_sensitivity: float = 0.95, prevalence: float | None = None
) -> SiteCalibration:
    """The site's calibration and threshold from LABELLED rows; refuses fewer than MIN_PER_CLASS of either class."""
    counts = {"NORMAL": int((labelled.truth == 0).sum()), "PNEUMONIA": int((labelled.truth == 1).sum())}
    short = [f"{n} {name}" for name, n in counts.items() if n < MIN_PER_CLASS]
    if short:
        raise SiteCalibrationError(
            f"too few labelled scans to calibrate: {' and '.join(short)} (need at least {MIN_PER_CLASS} of each class)"
        )
    with_slope = min(counts.values()) >= SLOPE_MIN_PER_CLASS
    slope, intercept, refit = _fit_logistic(clipped_logit(labelled.probabilities), labelled.truth, with_slope)
    if prevalence is not None:
        # The sample's share of pneumonia is baked into the intercept; move it to the site's.
        sample = labelled.truth.mean()
        intercept += float(clipped_logit(np.array(prevalence)) - clipped_logit(np.array(sample)))
    site = expit(slope * clipped_logit(labelled.probabilities) + intercept)
    threshold = threshold_for_sensitivity(site, labelled.truth, target_sensitivity)
    metrics = binary_metrics(labelled.truth, site, threshold)
    at_threshold: dict[str, object] = {
        name: {"value": metrics[name], "interval": list(wilson_interval(*PROPORTIONS[name](metrics)))}
        for name in ("sensitivity", "specificity")
    }
    at_threshold["measured_on"] = "the same scans that chose the threshold (optimistic; see cross_checked)"
    return SiteCalibration(
        base_model=labelled.base_model, threshold=threshold, slope=slope, intercept=intercept, refit=refit,
        target_sensitivity=target_sensitivity, counts={**counts, "used": int(labelled.truth.size)},
        at_threshold=at_threshold, cross_checked=_cross_check(labelled, target_sensitivity), prevalence=prevalence,
    )


def _fit_logistic(logits: np.ndarray, truth: np.ndarray, with_slope: bool) -> tuple[float, float, str]:
    if with_slope:
        slope, intercept = fit_logistic(logits, truth)
        if slope > 0:
            return slope, intercept, "slope and intercept"
    from scipy.optimize import minimize_scalar
    from sklearn.metrics import log_loss

    best = minimize_scalar(lambda b: log_loss(truth, np.clip(expit(logits + b), 1e-12, 1 - 1e-12), labels=[0, 1]),
                           bounds=(-20, 20), method="bounded")
    return 1.0, float(best.x), "intercept"


def _cross_check(labelled: LabelledRows, target_sensitivity: float) -> dict[str, float]:
    """Sensitivity and specificity when each fold is judged at the threshold chosen on the others (stratified)."""
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(CROSS_CHECK_FOLDS, shuffle=True, random_state=0)
    predicted = np.zeros_like(labelled.truth)
    for choose, judge in folds.split(labelled.probabilities, labelled.truth):
        threshold = threshold_for_sensitivity(labelled.probabilities[choose], labelled.truth[choose], target_sensitivity)
        predicted[judge] = labelled.probabilities[judge] >= threshold
    positives, negatives = labelled.truth == 1, labelled.truth == 0
    return {
        "sensitivity": float(predicted[positives].mean()),
        "specificity": float(1 - predicted[negatives].mean()),
        "folds": CROSS_CHECK_FOLDS,
    }


