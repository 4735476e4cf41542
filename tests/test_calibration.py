import numpy as np
import pytest

from xscan.calibration import brier_score, expected_calibration_error, fit_temperature, threshold_for_sensitivity


def test_temperature_recovers_an_overconfident_model():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 20_000)
    labels = (rng.random(true_logits.size) < 1 / (1 + np.exp(-true_logits))).astype(int)
    assert fit_temperature(3.0 * true_logits, labels) == pytest.approx(3.0, rel=0.08)


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
