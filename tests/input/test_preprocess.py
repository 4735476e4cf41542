"""The one preprocessing: shape, equalization, and the same model input in training and in scoring."""

from pathlib import Path

import numpy as np
import pytest
from support.data import FULLRES, TRAIN, needs_data, real_scans

from xscan.input.decode import decode
from xscan.input.preprocess import preprocess
from xscan.model.card import default_weights_dir, read_card
from xscan.scoring.pipeline import load_scan
from xscan.training import parts
from xscan.training.dataset import LabelledScan
from xscan.training.robustness import SHIFTS

IMAGE_SIZE = read_card(default_weights_dir()).image_size


@pytest.fixture
def grey():
    return decode(real_scans("NORMAL", 1)[0])


def test_shape_dtype_and_range(grey):
    scan = preprocess(grey, 160)
    assert scan.shape == (160, 160, 1)
    assert scan.dtype == np.float32
    assert 0.0 <= scan.min() and scan.max() <= 1.0


def test_equalization_spreads_grey_levels(grey):
    dark = (grey // 4).astype(np.uint8)  # an under-exposed copy using a quarter of the range
    assert preprocess(dark, 160).max() == pytest.approx(1.0)
    assert preprocess(dark, 160).min() < 0.05


@pytest.mark.parametrize("shift", ["gamma 0.7", "gamma 1.5", "contrast x0.6"])
def test_monotone_exposure_changes_are_mostly_removed(grey, shift):
    before = preprocess(grey, 160)
    after = preprocess(SHIFTS[shift](grey), 160)
    assert np.abs(before - after).mean() < 0.03


def test_rejects_colour_or_float_input(grey):
    with pytest.raises(ValueError):
        preprocess(np.dstack([grey, grey, grey]), 160)
    with pytest.raises(ValueError):
        preprocess(grey.astype(np.float32), 160)


def _as_trained(paths: list[Path]) -> np.ndarray:
    """Model inputs the way `xscan train` makes them: a full decode, then preprocess."""
    return parts.preprocess_all(parts.load_images([LabelledScan(path, 0, path.name) for path in paths]), IMAGE_SIZE)


def _as_scored(paths: list[Path]) -> np.ndarray:
    """Model inputs the way `xscan score` makes them: a reduced decode where the JPEG is large enough."""
    return np.stack([load_scan(path, IMAGE_SIZE).model_input for path in paths])


def test_training_sized_scans_reach_the_model_exactly_as_in_training():
    paths = real_scans("NORMAL", 4) + real_scans("PNEUMONIA", 4)
    assert np.array_equal(_as_scored(paths), _as_trained(paths))


@needs_data
def test_full_resolution_scans_are_scored_from_a_reduced_decode_that_differs_little():
    """The one difference between the two paths: scoring decodes large JPEGs at 1/2, 1/4 or 1/8 scale."""
    paths = sorted(FULLRES.rglob("*.jpeg"))[::8]
    per_scan = np.abs(_as_scored(paths) - _as_trained(paths)).mean(axis=(1, 2, 3))
    assert (per_scan > 0).mean() >= 0.8  # most really are decoded reduced when scored
    assert per_scan.max() < 0.01


@needs_data
def test_training_images_and_their_full_resolution_originals_match():
    original = sorted((FULLRES / "NORMAL").iterdir())[0]
    small = TRAIN / "NORMAL" / original.name
    if not small.exists():
        pytest.skip("original not in the training split under the same name")
    difference = np.abs(preprocess(decode(original), 160) - preprocess(decode(small), 160))
    assert difference.mean() < 0.05
