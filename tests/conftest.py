"""Shared fixtures: real scans from ../shared/data, small folders built from them, the bundled model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAIN = DATA / "chest_xray" / "train"
FULLRES = DATA / "fullres"
SAMPLES = Path(__file__).resolve().parent / "data" / "scans"

if not TRAIN.is_dir():
    pytest.exit(f"the real data set is missing: expected it at {DATA} (see README)", returncode=2)


def real_scans(label: str, count: int, root: Path = TRAIN) -> list[Path]:
    """The first COUNT scans of class LABEL, in sorted order: the same files on every run."""
    return sorted((root / label).iterdir())[:count]


@pytest.fixture
def scan_folder(tmp_path: Path) -> Path:
    """A folder NORMAL/ + PNEUMONIA/ of 6 real 224-pixel training scans each."""
    for label in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "scans" / label).mkdir(parents=True)
        for path in real_scans(label, 6):
            shutil.copy(path, tmp_path / "scans" / label / path.name)
    return tmp_path / "scans"


@pytest.fixture(scope="session")
def scorer():
    """The bundled model, loaded once for the whole session."""
    from xscan.model import load_scorer

    return load_scorer()
