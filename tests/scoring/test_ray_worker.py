"""What the Ray workers send back travels as columns of plain values and comes back as the same rows (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xscan.scoring.ray_worker import POSITION, WARNINGS, rows_as_columns, rows_from_columns, warnings_of
from xscan.scoring.results import Row

ROWS = [
    Row("a.jpeg", 0.123456789, 0.5, "xscan-cnn 1.0 0123abcd", trailing_columns={"grey_mean": "0.4123", "Tag": "é"}),
    Row("b.dcm", None, 0.5, "xscan-cnn 1.0 0123abcd", "skipped: Modality CT, not a radiograph", {"Tag": ""}),
    Row("c.png", 0.9, 0.5, "xscan-cnn 1.0 0123abcd", scope="not a chest radiograph (score 0.998)"),
]


def test_rows_travel_as_columns_of_plain_values_and_come_back_equal():
    columns = rows_as_columns(ROWS)
    assert all(isinstance(column, np.ndarray) and column.dtype != object for column in columns.values())
    assert all(len(column) == len(ROWS) for column in columns.values())
    back = rows_from_columns(columns, [row.path for row in ROWS])
    assert back == ROWS
    assert back[0].probability == 0.123456789 and back[1].probability is None  # exact, and None kept apart from 0


def test_a_column_that_is_not_a_rows_field_is_never_needed_and_a_missing_one_is_an_error():
    columns = rows_as_columns(ROWS) | {POSITION: np.arange(3), WARNINGS: np.array(["[]"] * 3)}
    assert rows_from_columns(columns, ["x", "y", "z"])[2].scope == ROWS[2].scope
    del columns["row.scope"]
    with pytest.raises(KeyError):
        rows_from_columns(columns, ["x", "y", "z"])


def test_a_files_warnings_come_back_with_its_path():
    cell = '[["UserWarning", "pydicom/valuerep.py:440", "odd"], ["native", "cv2.imdecode (JPEG)", "Corrupt JPEG data"]]'
    warnings = warnings_of(cell, Path("scans/a.dcm"))
    assert [(w.category, w.message, w.path) for w in warnings] == [
        ("UserWarning", "odd", Path("scans/a.dcm")),
        ("native", "Corrupt JPEG data", Path("scans/a.dcm")),
    ]
