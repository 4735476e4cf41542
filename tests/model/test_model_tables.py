"""The model tables in README.md and docs/model.md are the bundled card's, as docs/update_tables.py writes them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from xscan.model.card import default_weights_dir, read_card

ROOT = Path(__file__).resolve().parents[2]


def _update_tables():
    spec = importlib.util.spec_from_file_location("update_tables", ROOT / "docs" / "update_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("document", ["README.md", "docs/model.md"])
def test_model_tables_match_the_card(document):
    update = _update_tables()
    marked = update.MARKED.search((ROOT / document).read_text())
    assert marked, f"{document} has no <!-- model-tables --> block"
    assert marked.group(1) == update.tables(read_card(default_weights_dir())), (
        f"run python docs/update_tables.py ({document})"
    )


def test_card_figures_come_from_scans_that_chose_nothing():
    card = read_card(default_weights_dir())
    data = card.training.data
    assert card.validation.n == sum(data.report.values())
    assert card.selection.n == sum(data.selection.values())
    assert "selection part" in card.threshold_rule
    for name in ("auc", "sensitivity", "specificity"):
        low, high = card.validation.intervals[name]
        assert low <= getattr(card.validation, name) <= high
