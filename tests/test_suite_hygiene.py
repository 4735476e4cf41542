"""The test suite's own rules.

Helpers in tests/support/, never a test module importing another; the stand-in scorer stands in for the
real one; a missing data set skips (or, under XSCAN_REQUIRE_DATA=1, fails) the tests that need it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import support.data
from support.stand_in import StandIn

from xscan.model.scorer import ScoresBatches

TESTS = Path(__file__).resolve().parent


def imported_top_names(path: Path) -> set[str]:
    """The first part of every module PATH imports, wherever the import statement is."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(TESTS.rglob("*.py")), ids=lambda path: path.name)
def test_no_test_module_imports_another_or_conftest(path: Path) -> None:
    test_modules = {
        module.stem for module in TESTS.rglob("*.py") if module.parent.name != "support"
    }  # test_*.py, conftest.py, the folders
    assert imported_top_names(path) & test_modules == set()


def test_the_import_check_sees_an_import_of_a_test_module(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text(
        "def helper():\n    from test_dicom import write_dicom\nfrom conftest import REPO\n"
    )
    assert {"test_dicom", "conftest"} <= imported_top_names(tmp_path / "test_x.py")


def test_the_real_scorer_and_the_stand_in_both_score_batches(scorer) -> None:
    assert isinstance(scorer, ScoresBatches) and isinstance(StandIn(), ScoresBatches)
    assert not isinstance(object(), ScoresBatches)
    inputs = np.zeros((3, scorer.card.image_size, scorer.card.image_size, 1), np.float32)
    assert [len(model.assess(inputs).probabilities) for model in (scorer, StandIn())] == [3, 3]


def test_a_missing_data_set_skips_and_under_xscan_require_data_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(support.data, "TRAIN", tmp_path / "nowhere")
    monkeypatch.delenv("XSCAN_REQUIRE_DATA", raising=False)
    with pytest.raises(pytest.skip.Exception, match="the real data set is missing at .*shared/data"):
        support.data.real_scans("NORMAL", 1)
    monkeypatch.setenv("XSCAN_REQUIRE_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match="XSCAN_REQUIRE_DATA=1"):
        support.data.validation_scans("NORMAL", 1)
