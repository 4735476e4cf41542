"""The operating point: Platt calibration and the threshold, chosen on the selection part; the card's figures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xscan.model.card import Figures, calibrated_probability
from xscan.stats.calibration import (
    brier_score,
    expected_calibration_error,
    fit_platt,
    threshold_for_sensitivity,
)
from xscan.stats.intervals import PROPORTIONS, bootstrap_intervals, wilson_interval
from xscan.stats.metrics import binary_metrics
from xscan.training.config import Log, TrainConfig


@dataclass(frozen=True)
class OperatingPoint:
    """sigmoid(logit / temperature + bias) is the probability; at or above `threshold` a scan is PNEUMONIA."""

    temperature: float
    bias: float
    threshold: float

    def probability(self, logits: np.ndarray) -> np.ndarray:
        """The calibrated probability of each logit."""
        return calibrated_probability(logits, self.temperature, self.bias)


def choose_operating_point(
    select_logits: np.ndarray, select_labels: np.ndarray, config: TrainConfig, log: Log
) -> OperatingPoint:
    """Platt scaling fitted on the selection part, then the highest threshold reaching the target sensitivity there.

    Args:
        select_logits: the ensemble's logits on the selection part.
        select_labels: their labels.
        config: the recipe (its `target_sensitivity`).
        log: where a warning goes when the logits cannot be calibrated.

    Returns:
        The operating point.
    """
    try:
        temperature, bias = fit_platt(select_logits, select_labels)
    except ValueError as error:  # a model that does not rank the selection part (too short a run, too little data)
        log(f"warning: {error}; the card keeps the raw logits (temperature 1, bias 0)")
        temperature, bias = 1.0, 0.0
    threshold = threshold_for_sensitivity(
        calibrated_probability(select_logits, temperature, bias), select_labels, config.target_sensitivity
    )
    return OperatingPoint(temperature, bias, threshold)


def figures(labels: np.ndarray, probability: np.ndarray, threshold: float, config: TrainConfig) -> Figures:
    """Metrics at THRESHOLD with 95 % intervals: Wilson for proportions, bootstrap for AUC.

    Args:
        labels: the part's labels.
        probability: its calibrated probabilities.
        threshold: the operating threshold.
        config: the recipe (bootstrap resamples and seed).

    Returns:
        The card's figures for the part.
    """
    metrics = binary_metrics(labels, probability, threshold)
    intervals = {name: wilson_interval(*count(metrics)) for name, count in PROPORTIONS.items()}
    if len(np.unique(labels)) == 2:
        boot, _ = bootstrap_intervals(labels, probability, threshold, config.bootstrap, config.seed)
        intervals["auc"] = (boot["auc"].low, boot["auc"].high)
    return Figures(
        **metrics,
        brier=brier_score(probability, labels),
        ece=expected_calibration_error(probability, labels),
        intervals={name: [float(low), float(high)] for name, (low, high) in intervals.items()},
    )
