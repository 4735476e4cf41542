"""`score`, `report` (with heatmaps), `explain`, `calibrate`, `drift`, `audit`, `studies`, `sr`, `info`: no TensorFlow.

`train`, which needs it (the `train` extra), says so and which extra to install. Issues 25, 29 and 30.

Each command runs as a real process with a `tensorflow` and a `keras` package first on its path
that raise ImportError when imported: a command that imported either, however late or lazily,
would crash or fail, which the exit code and output show (typer's CliRunner would hide a crash).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.data import REPO, SAMPLES, validation_scans

from xscan.errors import EXIT_DRIFT, EXIT_OK, EXIT_USAGE

BLOCKED = "raise ImportError('{name} is blocked by tests/test_without_tensorflow.py')\n"


@pytest.fixture(scope="module")
def blocked_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PYTHONPATH on which `import tensorflow` and `import keras` raise ImportError, then the repository."""
    blockers = tmp_path_factory.mktemp("blockers")
    for name in ("tensorflow", "keras"):
        (blockers / name).mkdir()
        (blockers / name / "__init__.py").write_text(BLOCKED.format(name=name))
    return os.pathsep.join([str(blockers), str(REPO)])


def xscan(blocked_path: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from xscan.cli import app; app()", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": blocked_path},
    )


def test_the_blockers_block(blocked_path: str) -> None:
    """Without this, the tests below could pass with TensorFlow imported after all."""
    for name in ("tensorflow", "keras"):
        done = subprocess.run(
            [sys.executable, "-c", f"import {name}"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": blocked_path},
        )
        assert done.returncode != 0 and f"{name} is blocked" in done.stderr


@pytest.mark.slow  # real commands in processes of their own
def test_score_quietly_then_report_without_tensorflow(blocked_path: str, tmp_path: Path) -> None:
    results = tmp_path / "results.csv"
    scored = xscan(blocked_path, "score", str(SAMPLES), "-o", str(results), "--quiet")
    assert (scored.returncode, scored.stdout, scored.stderr) == (EXIT_OK, "", "")  # --quiet prints nothing
    with open(results, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 8 and all(row["label"] in ("NORMAL", "PNEUMONIA") and not row["error"] for row in rows)
    assert {row["model"] for row in rows} == {"xscan-cnn-0.1.0-d3d49a7b"}

    reported = xscan(blocked_path, "report", str(results), "--labels", "--bootstrap", "50")
    assert reported.returncode == EXIT_OK, reported.stderr
    assert "sensitivity" in reported.stdout and "AUC" in reported.stdout


@pytest.mark.slow  # real commands in processes of their own
def test_report_html_and_explain_draw_heatmaps_without_tensorflow(blocked_path: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results = tmp_path / "results.csv"
    assert xscan(blocked_path, "score", str(SAMPLES), "-o", str(results), "--quiet").returncode == EXIT_OK
    page = tmp_path / "review"
    reported = xscan(
        blocked_path, "report", str(results), "--labels", "--bootstrap", "50", "--html", str(page), "--gallery", "2"
    )
    assert reported.returncode == EXIT_OK, reported.stderr
    assert "no heatmaps" not in reported.stdout + reported.stderr
    full = [cv2.imread(str(path)) for path in (page / "images").glob("*.png") if "thumb" not in path.name]
    assert full and all(_coloured(image) for image in full)  # each overlay has its colour bar: heatmaps were drawn
    explained = xscan(blocked_path, "explain", str(SAMPLES), "-o", str(tmp_path / "heatmaps"), "--quiet")
    assert explained.returncode == EXIT_OK, explained.stderr
    assert len(list((tmp_path / "heatmaps").rglob("*.png"))) == 8


@pytest.mark.slow  # real commands in processes of their own
def test_sr_draws_its_heatmap_images_without_tensorflow(
    blocked_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("highdicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    film = sorted(SAMPLES.rglob("*.jpeg"))[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality, ds.ViewPosition = generate_uid(), generate_uid(), "DX", "PA"
    ds.PatientID = "P"
    ds.set_pixel_data(cv2.imread(str(film), cv2.IMREAD_GRAYSCALE), "MONOCHROME2", 8)
    (tmp_path / "export").mkdir()
    ds.save_as(tmp_path / "export" / "film.dcm", enforce_file_format=True)
    results = tmp_path / "results.csv"
    assert xscan(blocked_path, "score", str(tmp_path / "export"), "-o", str(results), "--quiet").returncode == EXIT_OK
    monkeypatch.setenv("XSCAN_STATE_DIR", str(tmp_path / "state"))  # this test's install, not the user's
    done = xscan(blocked_path, "sr", str(results), "-o", str(tmp_path / "sr"))
    assert done.returncode == EXIT_OK, done.stderr
    assert len(list((tmp_path / "sr" / "heatmaps").glob("*.dcm"))) == 1


def _coloured(image: np.ndarray) -> bool:
    spread = image.max(axis=2).astype(int) - image.min(axis=2)
    return int((spread > 60).sum()) > 100


@pytest.mark.slow  # real commands in processes of their own
def test_calibrate_drift_and_studies_without_tensorflow(blocked_path: str, tmp_path: Path) -> None:
    for label in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "sample" / label).mkdir(parents=True)
        for path in validation_scans(label, 60):  # 120 scans: enough for a drift verdict
            shutil.copy(path, tmp_path / "sample" / label / path.name)
    results = tmp_path / "sample.csv"
    assert xscan(blocked_path, "score", str(tmp_path / "sample"), "-o", str(results), "--quiet").returncode == EXIT_OK
    calibrated = xscan(blocked_path, "calibrate", str(results), "--labels", "-o", str(tmp_path / "site.json"))
    assert calibrated.returncode == EXIT_OK, calibrated.stderr
    assert "threshold" in calibrated.stdout and (tmp_path / "site.json").exists()
    drift = xscan(blocked_path, "drift", str(results))
    assert drift.returncode == EXIT_OK, drift.stdout + drift.stderr  # validation films: the reference's own kind
    with open(tmp_path / "reads.csv", "w") as reads:
        reads.write("path,label,read_at\n")
        for path in sorted((tmp_path / "sample").rglob("*.jpeg")):
            reads.write(f"{path},{path.parent.name},2026-03-02\n")
    audit = xscan(
        blocked_path,
        "audit",
        str(results),
        "--reads",
        str(tmp_path / "reads.csv"),
        "--calibration",
        str(tmp_path / "site.json"),
    )
    assert audit.returncode in (EXIT_OK, EXIT_USAGE, EXIT_DRIFT), audit.stdout + audit.stderr
    assert "promise: sensitivity >= 0.950 (site calibration" in audit.stdout
    assert "the results were not scored with" in audit.stdout  # scored without it: said, not judged silently
    studies = xscan(blocked_path, "studies", str(results), "-o", str(tmp_path / "studies.csv"))
    assert studies.returncode == EXIT_OK, studies.stderr
    assert (tmp_path / "studies.csv").read_text().count("\n") > 1


def test_info_without_tensorflow(blocked_path: str) -> None:
    shown = xscan(blocked_path, "info")
    assert shown.returncode == EXIT_OK, shown.stderr
    assert "xscan-cnn-0.1.0-d3d49a7b" in shown.stdout


@pytest.mark.slow  # a process each, importing xscan's training modules
@pytest.mark.parametrize(
    "command",
    [
        ["train", "{data}", "--out", "{out}", "--epochs", "1"],
        ["train", "{data}", "--out", "{out}", "--litert-only"],
    ],
    ids=["train", "litert-only"],
)
def test_training_names_the_train_extra(blocked_path: str, tmp_path: Path, command: list[str]) -> None:
    """Without TensorFlow, a command that needs it says which extra to install (a usage error), before any work."""
    data, out = tmp_path / "data", tmp_path / "out"
    for label in ("NORMAL", "PNEUMONIA"):
        (data / label).mkdir(parents=True)
    done = xscan(blocked_path, *(part.format(data=data, out=out) for part in command))
    assert done.returncode == EXIT_USAGE, done.stdout + done.stderr
    assert "pip install 'xscan[train]'" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()  # nothing written
