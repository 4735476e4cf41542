"""`score_folder`, the library call under `xscan score`: the same CSV, events in order, a summary, nothing printed."""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path

import cv2
import pytest
from support.data import SAMPLES
from support.dicom import PYDICOM_FILES, write_dicom
from typer.testing import CliRunner

import xscan
from xscan.cli import app
from xscan.errors import EXIT_SOME_FAILED, EXIT_USAGE, UsageError
from xscan.scoring.options import DicomOptions, ScoreOptions
from xscan.scoring.run import NotScanned, Planned, Repaired, RowsWritten, Warned, score_folder


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """The sample scans, an empty file, a CT and a frontal DICOM, and a broken link."""
    folder = Path(shutil.copytree(SAMPLES, tmp_path / "mixed"))
    (folder / "empty.png").write_bytes(b"")
    grey = cv2.imread(str(SAMPLES / "NORMAL" / "IM-0273-0001.jpeg"), cv2.IMREAD_GRAYSCALE)
    write_dicom(folder / "frontal.dcm", grey)
    write_dicom(folder / "IM-CT", grey, Modality="CT")
    (folder / "gone.jpeg").symlink_to(folder / "nowhere.jpeg")
    return folder


def test_xscan_score_and_score_folder_write_identical_csvs(mixed: Path, tmp_path: Path, scorer) -> None:
    by_cli, by_api = tmp_path / "cli.csv", tmp_path / "api.csv"
    result = CliRunner().invoke(
        app,
        [
            "score",
            str(mixed),
            "-o",
            str(by_cli),
            "--batch-size",
            "3",
            "--threshold",
            "0.5",
            "--dicom-tags",
            "AccessionNumber",
            "--quiet",
        ],
    )
    assert result.exit_code == EXIT_SOME_FAILED, result.output  # the empty file; the CT is skipped by policy
    options = ScoreOptions(batch_size=3, threshold=0.5, dicom=DicomOptions(tags=("AccessionNumber",)))
    summary = score_folder(mixed, by_api, options, scorer=scorer)
    assert by_api.read_bytes() == by_cli.read_bytes()
    assert (summary.found, summary.scored, summary.failed, summary.skipped, summary.unchanged) == (11, 9, 1, 1, 0)
    assert (summary.out_of_scope, summary.exit_code) == (0, EXIT_SOME_FAILED)


def test_events_come_in_order_and_cover_every_row(mixed: Path, tmp_path: Path, scorer) -> None:
    out = tmp_path / "r.csv"
    score_folder(mixed, out, ScoreOptions(batch_size=4), scorer=scorer)
    out.write_bytes(out.read_bytes() + b"tests/torn")  # as a killed run leaves it
    (mixed / "new.jpeg").write_bytes((SAMPLES / "PNEUMONIA" / "person545_bacteria_2288.jpeg").read_bytes())
    events = []
    summary = score_folder(mixed, out, ScoreOptions(batch_size=4), scorer=scorer, on_event=events.append)
    kinds = [type(event) for event in events]
    assert kinds == [NotScanned, Repaired, Planned, RowsWritten]
    assert events[0] == NotScanned(mixed / "gone.jpeg", "broken symbolic link")
    assert events[2] == Planned(
        to_score=2, unchanged=10
    )  # new.jpeg, and the row with an error again; the CT stays skipped
    assert [Path(row.path).name for row in events[3].rows] == ["empty.png", "new.jpeg"]
    assert (summary.scored, summary.failed, summary.skipped, summary.unchanged, summary.found) == (1, 1, 0, 10, 12)


def test_score_folder_prints_nothing(mixed: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Not even TensorFlow's start-up notes: the weights are loaded here, not passed in."""
    summary = score_folder(mixed, tmp_path / "r.csv")
    assert summary.scored == 9
    assert capfd.readouterr() == ("", "")


def process_state() -> dict[str, object]:
    """What a library call must leave as it found it.

    Thread pools, warning filters and hook, loggers, the environment.
    """
    from threadpoolctl import threadpool_info

    pydicom_log, root = logging.getLogger("pydicom"), logging.getLogger()
    return {
        "thread pools": {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()},
        "warning filters": list(warnings.filters),
        "showwarning": warnings.showwarning,
        "pydicom logger": (list(pydicom_log.handlers), pydicom_log.propagate, pydicom_log.level),
        "root logger": (list(root.handlers), root.level),
        "environment": dict(os.environ),
    }


def test_a_run_leaves_the_process_as_it_found_it(tmp_path: Path) -> None:
    """The weights loaded by the run itself, and a DICOM that pydicom warns of.

    So every piece of state is touched.
    """
    import keras  # noqa: F401  TensorFlow and Keras set environment variables as they are imported: theirs, not the run's
    import tensorflow  # noqa: F401
    from threadpoolctl import threadpool_limits

    folder = Path(shutil.copytree(SAMPLES, tmp_path / "scans"))
    shutil.copy(PYDICOM_FILES / "badVR.dcm", folder / "padded.dcm")
    # Two BLAS threads whatever an earlier test left (a loaded model caps them at one): a run that sets one is seen.
    with threadpool_limits(2, user_api="blas"):
        before = process_state()
        events = []
        summary = score_folder(
            folder, tmp_path / "r.csv", ScoreOptions(dicom=DicomOptions(frontal_only=False)), on_event=events.append
        )
        after = process_state()
    # A library the run loaded first (scikit-learn's OpenMP) starts at its own default:
    # only the pools there before count.
    after["thread pools"] = {
        path: threads for path, threads in after["thread pools"].items() if path in before["thread pools"]
    }
    assert summary.scored == 8 and any(
        isinstance(event, Warned) for event in events
    )  # the samples; pydicom warned of padded.dcm
    assert {name: value for name, value in after.items() if value != before[name]} == {}


def test_standard_output_gets_the_csv_and_nothing_else(
    tmp_path: Path, scorer, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = score_folder(SAMPLES, "-", scorer=scorer)
    lines = capsys.readouterr().out.splitlines()
    assert summary.scored == 8 and len(lines) == 1 + 8 and lines[0].startswith("path,probability,label")


def test_a_missing_folder_is_a_usage_error(tmp_path: Path, scorer) -> None:
    with pytest.raises(UsageError, match="is not a folder") as raised:
        score_folder(tmp_path / "missing", tmp_path / "r.csv", scorer=scorer)
    assert raised.value.exit_code == EXIT_USAGE
    assert not (tmp_path / "r.csv").exists()


def test_options_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        ScoreOptions(batch_size=0)
    with pytest.raises(ValueError, match="threshold"):
        ScoreOptions(threshold=1.5)
    with pytest.raises(TypeError):
        ScoreOptions(32)  # keyword-only: settings can be added in any order


def test_a_scorer_and_other_weights_are_not_both_given(tmp_path: Path, scorer) -> None:
    with pytest.raises(ValueError, match="not both"):
        score_folder(SAMPLES, tmp_path / "r.csv", ScoreOptions(weights=tmp_path), scorer=scorer)


@pytest.mark.parametrize("name", xscan.__all__)
def test_every_name_the_package_exports_is_there(name: str) -> None:
    assert getattr(xscan, name).__name__ == name


def test_a_name_the_package_does_not_export_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'score_fodler'"):
        xscan.score_fodler  # noqa: B018
