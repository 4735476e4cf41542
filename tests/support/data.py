"""The real data set at ../shared/data, the bundled sample scans, and what a test does when the data set is missing.

A clone without ../shared/data still runs every test that needs only what the repository holds;
the others skip, naming the missing folder. With XSCAN_REQUIRE_DATA=1 (set by .ci/run) a missing
data set fails them instead, as a missing Ray or browser does there.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
TRAIN = DATA / "chest_xray" / "train"
FULLRES = DATA / "fullres"
NIH = DATA / "nih_adult"
SAMPLES = REPO / "tests" / "data" / "scans"  # bundled with the repository: tests on these need no data set

MISSING = f"the real data set is missing at {DATA} (see README)"
# pytest.mark.needs_data on a test that reads the data set other than through the helpers below
# (conftest.py acts on it).
needs_data = pytest.mark.needs_data


def have_data() -> bool:
    return TRAIN.is_dir()


def require_data() -> None:
    """Skip the calling test when the data set is missing; fail it instead under XSCAN_REQUIRE_DATA=1."""
    if have_data():
        return
    if os.environ.get("XSCAN_REQUIRE_DATA") == "1":
        pytest.fail(f"{MISSING}; XSCAN_REQUIRE_DATA=1 makes that a failure")
    pytest.skip(MISSING)


def real_scans(label: str, count: int, root: Path = TRAIN) -> list[Path]:
    """The first COUNT scans of class LABEL, in sorted order: the same files on every run."""
    require_data()
    return sorted((root / label).iterdir())[:count]


@cache
def _validation_paths() -> frozenset[Path]:
    from xscan.model.card import default_weights_dir, read_card
    from xscan.training.config import card_split
    from xscan.training.dataset import find_labelled_scans
    from xscan.training.parts import split_for_training

    config = card_split(read_card(default_weights_dir()))
    _, _, report = split_for_training(find_labelled_scans(TRAIN), config)
    return frozenset(scan.path for scan in report)


def validation_scans(label: str, count: int) -> list[Path]:
    """The first COUNT scans of class LABEL from the report part of the bundled model's validation.

    The model was never trained on them and they chose nothing (epoch, calibration, threshold),
    so a test that the model tells the classes apart on
    them can fail; on training scans it could not, realistically.
    """
    require_data()
    held_out = _validation_paths()
    return [path for path in sorted((TRAIN / label).iterdir()) if path in held_out][:count]
