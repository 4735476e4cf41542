import numpy as np
import pytest
from conftest import TRAIN, real_scans

from xscan import scoring, train
from xscan.decode import decode
from xscan.preprocess import preprocess
from xscan.robustness import SHIFTS


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


def test_train_and_score_share_the_same_function():
    assert train.preprocess is preprocess
    assert scoring.preprocess is preprocess


def test_training_images_and_their_full_resolution_originals_match():
    from conftest import FULLRES

    original = sorted((FULLRES / "NORMAL").iterdir())[0]
    small = TRAIN / "NORMAL" / original.name
    if not small.exists():
        pytest.skip("original not in the training split under the same name")
    difference = np.abs(preprocess(decode(original), 160) - preprocess(decode(small), 160))
    assert difference.mean() < 0.05
