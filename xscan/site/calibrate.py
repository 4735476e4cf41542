"""A site's own operating point: threshold and calibration refitted on a few labelled local scans (SITE.json).

The bundled model's ranking travels between hospitals better than its threshold and its
probabilities do. A site scores a labelled local sample with the bundled model, and
`fit_site_calibration` chooses the threshold from the sample's pneumonia scores by a rule with a
stated guarantee on new scans like them (xscan.stats.conformal): expected sensitivity at least the
target (split-conformal), or, with a confidence, sensitivity at least the target with that
probability (the Neyman-Pearson umbrella rule). It refits the calibration too: always the
intercept (the site's prevalence), the slope too when each class has at least SLOPE_MIN_PER_CLASS
scans. Scoring with the file maps each base probability p to sigmoid(slope * logit(p) + intercept)
and compares that with the site threshold. The map is increasing, so it moves no scan across the
threshold: the rule reads the pneumonia scores alone, and every normal scan judges its specificity
out of sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit

from xscan.errors import ResultsWriteError
from xscan.model.site_calibration import (
    MODEL_SEPARATOR,
    SiteCalibration,
    SiteCalibrationError,
    clipped_logit,
    recalibrated,
)
from xscan.reporting.labels import GroundTruth
from xscan.reporting.report import read_results
from xscan.scoring.results import Row
from xscan.stats import conformal
from xscan.stats.calibration import fit_logistic
from xscan.stats.intervals import PROPORTIONS, wilson_interval
from xscan.stats.metrics import binary_metrics

MIN_PER_CLASS = 20  # fewer labelled scans of either class and no threshold is chosen
SLOPE_MIN_PER_CLASS = 100  # from this many of each class, the slope is refitted as well as the intercept
# Results carry six decimals: a new scan scored exactly like the threshold's scan may lie half a unit below its
# written score, so the threshold sits that much lower and still catches it, as the guarantee counts on.
ROUNDING = 0.5e-6


@dataclass(frozen=True)
class LabelledRows:
    """The rows a calibration may use, and what was left out and why."""

    probabilities: np.ndarray
    truth: np.ndarray
    base_model: str
    left_out: dict[str, list[str]]  # reason -> paths


def select_rows(rows: Sequence[Row], truth_of: GroundTruth) -> LabelledRows:
    """Select the rows a calibration may use: with ground truth, a probability, no error, in scope.

    Args:
        rows: The results' rows, scored with one model and without a site calibration.
        truth_of: The ground truth.

    Returns:
        Their probabilities, ground truth and model; the others by reason.

    Raises:
        SiteCalibrationError: The rows hold several models, or were scored with a site calibration.
    """
    left_out: dict[str, list[str]] = {}
    kept: list[tuple[float, int]] = []
    models = {row.model for row in rows}
    if len(models) > 1:
        raise SiteCalibrationError(
            f"the results hold rows of {len(models)} models ({', '.join(sorted(models))}); use one model's rows"
        )
    model = models.pop() if models else ""
    if MODEL_SEPARATOR in model:
        raise SiteCalibrationError(
            f"the results were scored with a site calibration ({model}); "
            "calibrate from results scored without --calibration"
        )
    for row in rows:
        label = truth_of(row.path)
        reason = (
            "error"
            if row.error or row.probability is None
            else "out of scope"
            if row.scope
            else "no ground truth"
            if label is None
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
    labelled: LabelledRows,
    target_sensitivity: float = 0.95,
    prevalence: float | None = None,
    confidence: float | None = None,
) -> SiteCalibration:
    """Fit the site's calibration and choose its threshold from labelled rows.

    Args:
        labelled: The rows, from `select_rows`.
        target_sensitivity: Without `confidence`, the threshold keeps the expected sensitivity on new
            scans at or above it (split-conformal).
        prevalence: The site's pneumonia share: moves the intercept there from the sample's.
        confidence: Keep the sensitivity itself at or above the target with this probability
            (umbrella rule).

    Returns:
        The site calibration, with what was measured on the sample and out of sample.

    Raises:
        SiteCalibrationError: Fewer than MIN_PER_CLASS scans of either class, or fewer pneumonia
            scans than the rule needs (the message says how many).
    """
    counts = {"NORMAL": int((labelled.truth == 0).sum()), "PNEUMONIA": int((labelled.truth == 1).sum())}
    short = [f"{n} {name}" for name, n in counts.items() if n < MIN_PER_CLASS]
    if short:
        raise SiteCalibrationError(
            f"too few labelled scans to calibrate: {' and '.join(short)} (need at least {MIN_PER_CLASS} of each class)"
        )
    pneumonia = labelled.probabilities[labelled.truth == 1]
    rank = _rank(pneumonia.size, target_sensitivity, confidence)
    with_slope = min(counts.values()) >= SLOPE_MIN_PER_CLASS
    slope, intercept, refit = _fit_logistic(clipped_logit(labelled.probabilities), labelled.truth, with_slope)
    sample_share = float(labelled.truth.mean())
    if prevalence is not None:
        # The sample's share of pneumonia is baked into the intercept; move it to the site's.
        intercept += float(clipped_logit(np.array(prevalence)) - clipped_logit(np.array(sample_share)))

    def threshold_below(scores: np.ndarray, at_rank: int) -> float:
        return float(recalibrated(conformal.threshold_at_rank(scores, at_rank) - ROUNDING, slope, intercept))

    threshold = threshold_below(pneumonia, rank)
    site = recalibrated(labelled.probabilities, slope, intercept)
    metrics = binary_metrics(labelled.truth, site, threshold)
    at_threshold: dict[str, object] = {
        name: {"value": metrics[name], "interval": list(wilson_interval(*PROPORTIONS[name](metrics)))}
        for name in ("sensitivity", "specificity")
    }
    at_threshold["measured_on"] = (
        "the sample itself: its pneumonia scans chose the threshold, so sensitivity is optimistic "
        "(see cross_checked and sensitivity_range)"
    )
    expected, low, high = conformal.caught_range(pneumonia.size, rank)
    return SiteCalibration(
        base_model=labelled.base_model,
        threshold=threshold,
        slope=slope,
        intercept=intercept,
        refit=refit,
        target_sensitivity=target_sensitivity,
        counts={**counts, "used": int(labelled.truth.size)},
        at_threshold=at_threshold,
        cross_checked=_out_of_sample(
            labelled,
            site,
            threshold,
            threshold_below,
            conformal.rank(pneumonia.size - 1, target_sensitivity, confidence),
        ),
        prevalence=prevalence,
        rule="expected" if confidence is None else "confidence",
        confidence=confidence,
        rank=rank,
        guarantee=guarantee(target_sensitivity, confidence, rank, pneumonia.size),
        sensitivity_range={
            "expected": expected,
            "low": low,
            "high": high,
            "quantiles": list(conformal.RANGE_QUANTILES),
            "miss_rate": f"Beta({rank}, {pneumonia.size + 1 - rank})",
        },
        prevalence_assumed=sample_share if prevalence is None else prevalence,
    )


@dataclass(frozen=True)
class Calibrated:
    """What `calibrate_results` wrote, and the rows it left out by reason (reason -> paths)."""

    site: SiteCalibration
    left_out: dict[str, list[str]]


def calibrate_results(
    results: Path,
    truth: GroundTruth,
    output: Path,
    target_sensitivity: float = 0.95,
    prevalence: float | None = None,
    confidence: float | None = None,
) -> Calibrated:
    """Run `xscan calibrate` as one call: a results file's labelled rows -> a site calibration -> SITE.json.

    Args:
        results: The results CSV, scored without a site calibration.
        truth: The ground truth.
        output: The SITE.json to write.
        target_sensitivity: As `fit_site_calibration`.
        prevalence: As `fit_site_calibration`.
        confidence: As `fit_site_calibration`.

    Returns:
        The calibration written, and the rows left out by reason.

    Raises:
        ReportError: The results cannot be read.
        SiteCalibrationError: As `select_rows` and `fit_site_calibration` raise it.
        ResultsWriteError: SITE.json cannot be written.
    """
    labelled = select_rows(read_results(results), truth)
    site = fit_site_calibration(labelled, target_sensitivity, prevalence, confidence)
    try:
        output.write_text(site.to_json())
    except OSError as error:
        raise ResultsWriteError(f"cannot write {output}: {error.strerror or error}") from None
    return Calibrated(site, labelled.left_out)


def promise(target_sensitivity: float, confidence: float | None) -> str:
    """Say the rule's promise in a few words.

    Args:
        target_sensitivity: The target.
        confidence: The umbrella rule's confidence; None for the expected-sensitivity rule.

    Returns:
        The promise.
    """
    if confidence is None:
        return f"expected sensitivity on new scans >= {target_sensitivity:g}"
    return f"sensitivity on new scans >= {target_sensitivity:g} with probability >= {confidence:g}"


def guarantee(target_sensitivity: float, confidence: float | None, rank: int, n: int) -> str:
    """Say what the threshold promises, in plain words, with the rule's reference.

    Args:
        target_sensitivity: The target.
        confidence: The umbrella rule's confidence; None for the expected-sensitivity rule.
        rank: The threshold is the rank-th lowest pneumonia score.
        n: The number of pneumonia scores.

    Returns:
        The guarantee, and when it holds.
    """
    chosen = f"the threshold is the {_ordinal(rank)} lowest of the sample's {n} pneumonia scores"
    if confidence is None:
        how = (
            f"{chosen} (split-conformal, Angelopoulos & Bates, arXiv 2107.07511, section 3): averaged over samples "
            f"like this one it misses {rank} in {n + 1} new pneumonia scans, so the expected sensitivity is at least "
            f"{target_sensitivity:g}; one sample's threshold can do worse (sensitivity_range)"
        )
    else:
        how = (
            f"{chosen} (Neyman-Pearson umbrella rule, Tong, Feng & Li 2018): for at least {confidence:.0%} of samples "
            f"like this one, the threshold catches at least {target_sensitivity:.0%} of new pneumonia scans"
        )
    return (
        f"{promise(target_sensitivity, confidence)}: {how}. It holds for new scans like the sample's (the same "
        "equipment, export and patients); when they change, calibrate again"
    )


def _rank(n: int, target_sensitivity: float, confidence: float | None) -> int:
    try:
        rank = conformal.rank(n, target_sensitivity, confidence)
        needed = conformal.scores_needed(target_sensitivity, confidence)
    except ValueError as error:
        raise SiteCalibrationError(str(error)) from None
    if rank < 1:
        raise SiteCalibrationError(
            f"too few pneumonia scans to promise {promise(target_sensitivity, confidence)}: "
            f"{n} here, at least {needed} needed"
        )
    return rank


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _fit_logistic(logits: np.ndarray, truth: np.ndarray, with_slope: bool) -> tuple[float, float, str]:
    if with_slope:
        slope, intercept = fit_logistic(logits, truth)
        if slope > 0:
            return slope, intercept, "slope and intercept"
    from scipy.optimize import minimize_scalar
    from sklearn.metrics import log_loss

    best = minimize_scalar(
        lambda b: log_loss(truth, np.clip(expit(logits + b), 1e-12, 1 - 1e-12), labels=[0, 1]),
        bounds=(-20, 20),
        method="bounded",
    )
    return 1.0, float(best.x), "intercept"


def _out_of_sample(
    labelled: LabelledRows,
    site: np.ndarray,
    threshold: float,
    threshold_below: Callable[[np.ndarray, int], float],
    loo_rank: int,
) -> dict[str, object]:
    """Sensitivity and specificity judged on scans that did not choose the threshold they are judged at.

    Leave-one-out cross-fitting, with `loo_rank` the rule's rank for one pneumonia scan fewer (when
    that is 0 the rule cannot run on one scan fewer, and neither figure is measured): each pneumonia
    scan is judged at the threshold the rule picks from the other pneumonia scans; the normal scans
    are dealt out in turn to those same thresholds, each judged once, so that the figure carries the
    threshold's own sampling spread (the in-sample one does not). Specificity at the site
    `threshold`, which only the pneumonia scores chose, is given as well.
    """
    positives, negatives = labelled.truth == 1, labelled.truth == 0
    pneumonia, n, m = labelled.probabilities[positives], int(positives.sum()), int(negatives.sum())
    figures: dict[str, object] = {
        "specificity": int((site[negatives] < threshold).sum()) / m,
        "specificity_interval": list(wilson_interval(int((site[negatives] < threshold).sum()), m)),
        "specificity_method": f"all {m} normal scans at the site threshold, which the pneumonia scores alone chose",
    }
    if loo_rank < 1:
        needed = f"not measured: leave-one-out needs {n + 1} pneumonia scans for this rule"
        return figures | {
            "sensitivity": None,
            "sensitivity_method": needed,
            "specificity_cross_fitted": None,
            "specificity_cross_fitted_method": needed,
        }
    thresholds = np.array([threshold_below(np.delete(pneumonia, i), loo_rank) for i in range(n)])
    specific = int((site[negatives] < thresholds[np.arange(m) % n]).sum())
    return figures | {
        "sensitivity": float(np.mean(site[positives] >= thresholds)),
        "sensitivity_method": (
            f"leave-one-out: each of the {n} pneumonia scans at the threshold chosen from the other {n - 1}"
        ),
        "specificity_cross_fitted": specific / m,
        "specificity_cross_fitted_interval": list(wilson_interval(specific, m)),
        "specificity_cross_fitted_method": (
            f"cross-fitted: the {m} normal scans dealt out in turn to the {n} leave-one-out thresholds"
        ),
    }
