"""Smoke tests of the bundled weights on fixed real scans: the right side of the shipped threshold, ranked, calibrated.

The scans come from the report part of the card's validation patients: never trained on, and they
chose nothing (epoch, calibration, threshold), so these tests can fail; the bounds (85 % per class)
leave room for the validation error rate (sensitivity 0.95 by design) and for scans of one patient
failing together.
"""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from support.data import validation_scans

from xscan.input.decode import decode
from xscan.input.preprocess import preprocess

PER_CLASS = 40


@pytest.fixture(scope="module")
def validation_scores(scorer):
    paths = validation_scans("NORMAL", PER_CLASS) + validation_scans("PNEUMONIA", PER_CLASS)
    batch = np.stack([preprocess(decode(path), scorer.card.image_size) for path in paths])
    return np.array([0] * PER_CLASS + [1] * PER_CLASS), scorer.probabilities(batch)


def test_fixed_validation_scans_fall_on_the_right_side_of_the_threshold(scorer, validation_scores):
    labels, probabilities = validation_scores
    positive = probabilities >= scorer.card.threshold
    assert positive[labels == 1].sum() >= 0.85 * PER_CLASS, probabilities[labels == 1]
    assert (~positive[labels == 0]).sum() >= 0.85 * PER_CLASS, probabilities[labels == 0]


def test_fixed_validation_scans_are_ranked(validation_scores):
    labels, probabilities = validation_scores
    assert roc_auc_score(labels, probabilities) >= 0.95


def test_probabilities_are_calibrated_not_saturated(scorer, validation_scores):
    """Calibration in the large: weighted to the report part's prevalence, the mean probability is that prevalence.

    The balanced sample's class means, weighted as the report part's classes are, give the mean
    probability over that part (0.753 against 0.757 with run H); the network's uncalibrated sigmoid gives 0.657.
    """
    labels, probabilities = validation_scores
    assert np.all((probabilities > 0) & (probabilities < 1))  # a logit beyond about 37 would give exactly 1.0
    report = scorer.card.training.data.report
    prevalence = report["PNEUMONIA"] / (report["PNEUMONIA"] + report["NORMAL"])
    weighted_mean = (1 - prevalence) * probabilities[labels == 0].mean() + prevalence * probabilities[
        labels == 1
    ].mean()
    assert weighted_mean == pytest.approx(prevalence, abs=0.04)
