"""The LiteRT file's heatmap (class activation map) is Grad-CAM: the same maps, the same grid, no TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest
from support.data import SAMPLES, needs_data, validation_scans

from xscan.explain.cam import Explainer, cam_grid
from xscan.explain.gradcam import GradCam, grid_of
from xscan.explain.overlay import Grid
from xscan.model.card import model_config_from_card
from xscan.model.network import ModelConfig, build_model
from xscan.scoring.pipeline import load_scan


def test_the_cards_grid_is_the_networks_own():
    for config in (ModelConfig(), ModelConfig(image_size=64, widths=(4, 8, 8), extra_convs_from_stage=1, members=1)):
        assert cam_grid(config) == grid_of(build_model(config), config)
    assert cam_grid(ModelConfig()) == Grid(cells=5, stride=32, offset=31.0, field=175)


def _model_inputs(paths, size: int) -> np.ndarray:
    return np.stack([load_scan(path, size).model_input for path in paths])


def _correlations(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.array([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(first, second, strict=True)])


@pytest.mark.slow
@needs_data
def test_the_litert_map_equals_tensorflows_gradcam(scorer):
    """On the 8 sample scans and 100 report-part films (never trained on): per film correlation >= 0.99."""
    config = model_config_from_card(scorer.card)
    paths = sorted(SAMPLES.rglob("*.jpeg")) + validation_scans("NORMAL", 50) + validation_scans("PNEUMONIA", 50)
    assert len(paths) == 108
    scans = _model_inputs(paths, config.image_size)
    probabilities, litert = Explainer(scorer).cells(scans)
    reference = GradCam(scorer.network, config).cells(scans)
    assert litert.shape == reference.shape == (108, 5, 5)
    assert np.array_equal(probabilities, scorer.probabilities(scans))  # the same call that scores
    correlations = _correlations(litert, reference)
    assert correlations.min() >= 0.99, sorted(correlations)[:5]
    assert np.abs(litert - reference).max() < 1e-3  # the same values, in logit units, not only the same shape
    assert np.abs(reference).max() > 0.05  # real maps


def test_scoring_without_maps_copies_none_out(scorer):
    scans = _model_inputs(sorted(SAMPLES.rglob("*.jpeg"))[:2], scorer.card.image_size)
    plain, mapped = scorer.assess(scans), scorer.assess(scans, cams=True)
    assert plain.cams is None and mapped.cams.shape == (2, 5, 5)
    assert np.array_equal(plain.probabilities, mapped.probabilities)
