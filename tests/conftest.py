"""Shared fixtures: small folders of real scans from ../shared/data, the bundled model, a review page.

Helpers live in support/.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from support.data import NIH, real_scans, require_data, validation_scans
from support.review import REVIEW_GALLERY

# TensorFlow's numbers depend in their last bits on its thread count. `xscan score` asks for one
# thread, which a test process cannot once an earlier test has started TensorFlow; these variables
# hold whenever it starts, so that rows scored here equal, byte for byte, those of a subprocess.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked needs_data skips without the real data set before its fixtures run.

    Under XSCAN_REQUIRE_DATA=1 it fails instead.
    """
    if item.get_closest_marker("needs_data"):
        require_data()


@pytest.fixture
def scan_folder(tmp_path: Path) -> Path:
    """A folder NORMAL/ + PNEUMONIA/ of 6 real 224-pixel validation scans each."""
    for label in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "scans" / label).mkdir(parents=True)
        for path in validation_scans(label, 6):
            shutil.copy(path, tmp_path / "scans" / label / path.name)
    return tmp_path / "scans"


@pytest.fixture(scope="session")
def scorer():
    """The bundled model, loaded once for the whole session."""
    from xscan.model.scorer import load_scorer

    return load_scorer()


@pytest.fixture(scope="session")
def review_run(tmp_path_factory):
    """`xscan score` then `xscan report --labels --html` on real scans.

    Gives the results CSV, the page folder and the report's CliRunner result.

    Three training scans of each class and five adult films of each from another hospital (the
    model flags normals there), a normal training film filed under PNEUMONIA (a labelling error: a
    false negative whatever the model's sensitivity on adult films), so every labelled gallery has
    members; a truncated JPEG, and one row marked out of scope the way issue 12's check will write it.
    """
    import csv

    from typer.testing import CliRunner

    from xscan.cli import app
    from xscan.errors import EXIT_SOME_FAILED

    base = tmp_path_factory.mktemp("review")
    for label in ("NORMAL", "PNEUMONIA"):
        (base / "scans" / label).mkdir(parents=True)
        for path in real_scans(label, 3) + real_scans(label, 5, NIH):
            shutil.copy(path, base / "scans" / label / path.name)
    mislabelled = real_scans("NORMAL", 4)[-1]
    shutil.copy(mislabelled, base / "scans" / "PNEUMONIA" / f"filed-wrong-{mislabelled.name}")
    jpeg = real_scans("PNEUMONIA", 1)[0].read_bytes()
    (base / "scans" / "cut.jpeg").write_bytes(jpeg[: len(jpeg) // 2])
    results = base / "results.csv"
    # Without the scope check the adult films get labels, and some are wrong: every labelled gallery has members.
    scored = CliRunner().invoke(app, ["score", str(base / "scans"), "-o", str(results), "--quiet", "--no-scope-check"])
    assert scored.exit_code == EXIT_SOME_FAILED, scored.output  # the truncated JPEG
    with open(results, newline="") as stream:
        records = list(csv.DictReader(stream))
    for record in records:
        out = record["path"].endswith(real_scans("NORMAL", 1, NIH)[0].name)
        record["label"], record["scope"] = (
            ("OUT_OF_SCOPE", "outside the training population (test)") if out else (record["label"], "")
        )
    with open(results, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=[*records[0]])
        writer.writeheader()
        writer.writerows(records)
    page = base / "review"
    reported = CliRunner().invoke(
        app,
        [
            "report",
            str(results),
            "--labels",
            "--html",
            str(page),
            "--gallery",
            str(REVIEW_GALLERY),
            "--bootstrap",
            "200",
        ],
    )
    return results, page, reported
