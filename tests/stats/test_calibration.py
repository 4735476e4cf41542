"""Platt scaling, threshold choice and calibration error on logits whose true calibration is known."""

import numpy as np
import pytest

from xscan.model.card import calibrated_probability
from xscan.stats.calibration import brier_score, expected_calibration_error, fit_platt, threshold_for_sensitivity


def _labels_drawn_from(true_logits: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.random(true_logits.size) < 1 / (1 + np.exp(-true_logits))).astype(int)


def test_platt_scaling_recovers_an_overconfident_model():
    true_logits = np.random.default_rng(0).normal(0, 2, 20_000)
    temperature, bias = fit_platt(3.0 * true_logits, _labels_drawn_from(true_logits))
    assert temperature == pytest.approx(3.0, rel=0.08)
    assert bias == pytest.approx(0.0, abs=0.1)


def test_platt_scaling_removes_a_shift_of_the_logits():
    true_logits = np.random.default_rng(0).normal(1, 2, 20_000)  # as class weights and augmentation leave them
    labels = _labels_drawn_from(true_logits)
    temperature, bias = fit_platt(true_logits - 2.5, labels)
    assert temperature == pytest.approx(1.0, rel=0.08)
    assert bias == pytest.approx(2.5, abs=0.15)
    calibrated = calibrated_probability(true_logits - 2.5, temperature, bias)
    assert expected_calibration_error(calibrated, labels) < 0.02
    assert expected_calibration_error(calibrated_probability(true_logits - 2.5, 1.0), labels) > 0.2


def test_platt_scaling_refuses_logits_that_rank_the_wrong_way():
    true_logits = np.random.default_rng(0).normal(0, 2, 2_000)
    with pytest.raises(ValueError, match="right way round"):
        fit_platt(-true_logits, _labels_drawn_from(true_logits))


def test_threshold_reaches_the_target_sensitivity_and_is_the_highest_that_does():
    probabilities = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.5, 0.7, 0.8, 0.9, 0.95])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    threshold = threshold_for_sensitivity(probabilities, labels, 0.8)
    assert threshold == pytest.approx(0.5)  # 5 of 6 positives at >= 0.5; 0.6 would give 4 of 6
    predicted = probabilities >= threshold
    assert predicted[labels == 1].mean() >= 0.8


def test_expected_calibration_error_by_hand():
    probabilities = np.array([0.05, 0.05, 0.95, 0.95])
    labels = np.array([0, 1, 1, 1])
    # bin [0, .1): confidence .05, accuracy .5 -> .45 ; bin [.9, 1]: .95 vs 1 -> .05 ; weights 1/2 each
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.25)


def test_brier_score():
    assert brier_score(np.array([1.0, 0.0, 0.5]), np.array([1, 0, 1])) == pytest.approx(0.25 / 3)
