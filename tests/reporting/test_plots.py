"""The report's PNG plots: each written, non-empty and a valid image; a clear message without matplotlib."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from xscan.reporting.labels import FolderLabels
from xscan.reporting.plots import PlotsUnavailable, write_plots
from xscan.reporting.report import build_report
from xscan.scoring.results import Row


def _rows(classes: tuple[int, ...] = (0, 1)) -> list[Row]:
    rng = np.random.default_rng(0)
    names = {0: "NORMAL", 1: "PNEUMONIA"}
    return [
        Row(f"/d/{names[y]}/{i}.png", float(np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)), 0.5, "m")
        for i, y in enumerate(rng.choice(classes, 60))
    ]


def _assert_images(paths: list[Path], names: set[str]) -> None:
    assert {path.name for path in paths} == names
    for path in paths:
        assert path.stat().st_size > 1000, path
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 200 and image.shape[1] > 200, path
        assert image.std() > 10, f"{path} is blank"


def test_all_plots_with_both_classes(tmp_path: Path) -> None:
    report = build_report(_rows(), FolderLabels(), bootstrap=0)
    written = write_plots(report, tmp_path / "plots")
    _assert_images(
        written, {"roc.png", "precision-recall.png", "confusion-matrix.png", "calibration.png", "histogram.png"}
    )
    assert all(path.parent == tmp_path / "plots" for path in written)


def test_one_class_has_no_curves(tmp_path: Path) -> None:
    report = build_report(_rows(classes=(0,)), FolderLabels(), bootstrap=0)
    _assert_images(write_plots(report, tmp_path), {"confusion-matrix.png", "calibration.png", "histogram.png"})


def test_without_labels_only_the_histogram(tmp_path: Path) -> None:
    _assert_images(write_plots(build_report(_rows()), tmp_path), {"histogram.png"})


def test_missing_matplotlib_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    with pytest.raises(PlotsUnavailable, match=r"pip install 'xscan\[plots\]'"):
        write_plots(build_report(_rows()), tmp_path)
    assert list(tmp_path.iterdir()) == []
