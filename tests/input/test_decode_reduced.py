"""Reduced JPEG decoding (1/2, 1/4 or 1/8 scale inside libjpeg) barely changes the model input or the score.

Compared with a full decode of the same file, on all real full-resolution scans in ../shared/data/fullres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.data import FULLRES, needs_data

from xscan.input.decode import decode
from xscan.input.preprocess import preprocess
from xscan.scoring.pipeline import decode_min_side

pytestmark = needs_data
SCANS = sorted(FULLRES.rglob("*.jpeg"))  # none without the data set: the tests skip before they look

# Tolerances; in brackets the largest values measured with the model bundled at the time (docs/throughput.md).
INPUT_TOLERANCE = 0.01  # mean |pixel difference| of one model input, pixels in 0..1 [0.0065]
SCORE_TOLERANCE = (
    0.08  # |difference| of one file's calibrated probability of pneumonia [0.064 run H; 0.029 the first model]
)
MEAN_SCORE_TOLERANCE = 0.003  # the same, averaged over the files [0.0025 run H; 0.0007 the first model]


def model_input(path: Path, image_size: int, reduced: bool) -> np.ndarray:
    return preprocess(decode(path, min_side=decode_min_side(image_size) if reduced else 0), image_size)


def test_scans_are_decoded_reduced_but_not_below_the_model_input() -> None:
    assert len(SCANS) >= 100
    reduced_count = 0
    for path in SCANS:
        full, reduced = decode(path), decode(path, min_side=decode_min_side(160))
        if reduced.shape != full.shape:
            assert min(reduced.shape) >= decode_min_side(160), path.name
            reduced_count += 1
    assert reduced_count >= 0.8 * len(SCANS)  # 104 of 120: the smallest scans are decoded whole


@pytest.fixture(scope="module")
def inputs() -> tuple[np.ndarray, np.ndarray]:
    """(full-decode, reduced-decode) model inputs of every scan, stacked."""
    full = np.stack([model_input(path, 160, reduced=False) for path in SCANS])
    reduced = np.stack([model_input(path, 160, reduced=True) for path in SCANS])
    return full, reduced


def test_model_input_differs_little(inputs: tuple[np.ndarray, np.ndarray]) -> None:
    full, reduced = inputs
    per_scan = np.abs(full - reduced).mean(axis=(1, 2, 3))
    assert per_scan.max() < INPUT_TOLERANCE
    assert (per_scan > 0).mean() >= 0.8  # the two decodes really differ


def test_score_differs_little(scorer, inputs: tuple[np.ndarray, np.ndarray]) -> None:
    assert scorer.card.image_size == 160
    full, reduced = (scorer.probabilities(batch) for batch in inputs)
    difference = np.abs(full - reduced)
    assert difference.max() < SCORE_TOLERANCE
    assert difference.mean() < MEAN_SCORE_TOLERANCE
