"""`xscan score` on pydicom's own test files, as a new user tries it.

With --quiet nothing on stderr, every file one row with its outcome, each warning a line of the log
file with the file's path; docs/dicom.md's tables are this run's.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.data import REPO, real_scans
from support.dicom import PYDICOM_FILES, without_part10_header, write_dicom
from typer.testing import CliRunner

from xscan.cli import app
from xscan.errors import EXIT_SOME_FAILED

TOO_SMALL_16 = "image too small to be a radiograph (16x16 pixels)"
DICOMDIR = "skipped: no image (Media Storage Directory)"
# The files of the corpus folder that are not scored, and why: everything else in it is scored.
NOT_SCORED = {
    "ExplVR_BigEnd.dcm": "image too small to be a radiograph (80x60 pixels)",
    "ExplVR_BigEndNoMeta.dcm": "skipped: no image (RT Ion Plan)",
    "ExplVR_LitEndNoMeta.dcm": "skipped: no image (RT Ion Plan)",
    "JPEG2000-embedded-sequence-delimiter.dcm": "cannot decode DICOM pixel data: Unable to decode as exceptions were "
    "raised by all available plugins: pylibjpeg: Error decoding the J2K data: failed to read the header",
    "JPEGLSNearLossless_08.dcm": "image too small to be a radiograph (10x45 pixels)",
    "JPEGLSNearLossless_16.dcm": "image too small to be a radiograph (10x50 pixels)",
    # Read as the first frame alone from the file (size guards first), pydicom finds the data short as it reshapes it.
    "MR_truncated.dcm": "cannot decode DICOM pixel data: cannot reshape array of size 4065 into shape (64,64)",
    **dict.fromkeys(
        ["SC_rgb_small_odd.dcm", "SC_rgb_small_odd_big_endian.dcm", "SC_rgb_small_odd_jpeg.dcm"],
        "image too small to be a radiograph (3x3 pixels)",
    ),
    "UN_sequence.dcm": "skipped: no image (CT Image)",
    "badVR.dcm": "cannot decode DICOM pixel data: invalid literal for int() with base 10: '1A'",
    "empty_charset_LEI.dcm": "skipped: no image (no SOP class)",
    **dict.fromkeys(["meta_missing_tsyntax.dcm", "nested_priv_SQ.dcm"], "DICOM image without Rows"),
    # Its data set starts at byte 1, after a stray byte: neither Part 10 nor a bare data set.
    "no_meta.dcm": "not a DICOM file: no DICM marker at byte 128 and no data set at byte 0 "
    "(the file holds unrecognised binary data)",
    "no_meta_group_length.dcm": "skipped: no image (RT Image)",
    "priv_SQ.dcm": "skipped: no image (MR Image)",
    **dict.fromkeys(["reportsi.dcm", "reportsi_with_empty_number_tags.dcm"], "skipped: no image (Basic Text SR)"),
    **dict.fromkeys(
        [
            "rtdose.dcm",
            "rtdose_1frame.dcm",
            "rtdose_expb.dcm",
            "rtdose_expb_1frame.dcm",
            "rtdose_rle.dcm",
            "rtdose_rle_1frame.dcm",
        ],
        "image too small to be a radiograph (10x10 pixels)",
    ),
    **dict.fromkeys(["rtplan.dcm", "rtplan_truncated.dcm"], "skipped: no image (RT Plan)"),
    "rtstruct.dcm": "skipped: no image (RT Structure Set)",
    "test-SR.dcm": "skipped: no image (Comprehensive SR)",
    "waveform_ecg.dcm": "skipped: no image (12-lead ECG Waveform)",
}
# What pydicom warns of while these files are read; a repaired JPEG scan header is warned of too.
# MR_small_padded.dcm's excess-padding warning is not raised: its first frame is read from the file, without the
# padding.
WARNED = {"JPEG-lossy.dcm", "SC_rgb_jpeg.dcm", "badVR.dcm"}


def expected_error(name: str) -> str:
    """The error of the corpus file NAME (below the corpus folder); "" for a file that is scored."""
    parts = name.split("/")
    if parts[0] != "dicomdirtests":
        return NOT_SCORED.get(name, "")
    if parts[-1].startswith("DICOMDIR"):
        return DICOMDIR
    return (
        "skipped: no image (CT Image)" if parts[1] == "TINY_ALPHA" else TOO_SMALL_16
    )  # 16 x 16 thumbnails of CT and MR


def corpus_names() -> list[str]:
    """Every file of the corpus that is DICOM by name or by its first bytes, as xscan's walk finds them."""
    from xscan.input.walk import find_scans

    return [path.relative_to(PYDICOM_FILES).as_posix() for path in find_scans(PYDICOM_FILES).scans]


def docs_tables():
    spec = importlib.util.spec_from_file_location("dicom_corpus", REPO / "docs" / "dicom_corpus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Link pydicom's test files (not copied), and beside them write a chest film three ways."""
    folder = tmp_path_factory.mktemp("export")
    (folder / "pydicom").symlink_to(PYDICOM_FILES, target_is_directory=True)
    (folder / "written").mkdir()
    grey = cv2.imread(str(real_scans("PNEUMONIA", 1)[0]), cv2.IMREAD_GRAYSCALE)
    part10 = write_dicom(folder / "written" / "chest.dcm", grey.astype(np.uint16) * 16, bits_stored=12)
    without_part10_header(part10, folder / "written" / "CHEST0001", implicit_vr=True, little_endian=True)
    cv2.imwrite(str(folder / "written" / "photo.jpeg"), grey)
    shutil.move(folder / "written" / "photo.jpeg", folder / "written" / "photo.dcm")
    return folder


@pytest.fixture(scope="module")
def quiet_run(
    export: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess, dict[str, dict], str]:
    """Run `xscan score --quiet --no-dicom-filter --log-file` on the export, in a process of its own.

    Returns:
        The finished process, the rows by file name, and the log's text.
    """
    out = tmp_path_factory.mktemp("run")
    command = [
        sys.executable,
        "-c",
        "from xscan.cli import app; app()",
        "score",
        str(export),
        "-o",
        str(out / "results.csv"),
        "--quiet",
        "--no-dicom-filter",
        "--log-file",
        str(out / "xscan.log"),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    with open(out / "results.csv", newline="") as stream:
        rows = {Path(row["path"]).relative_to(export).as_posix(): row for row in csv.DictReader(stream)}
    return done, rows, (out / "xscan.log").read_text()


@pytest.mark.slow
def test_quiet_prints_nothing_and_exits_as_documented(quiet_run) -> None:
    done, _, _ = quiet_run
    assert (done.stdout, done.stderr) == ("", "")
    assert done.returncode == EXIT_SOME_FAILED  # some corpus files are broken on purpose


def test_every_corpus_file_is_one_row_scored_skipped_or_refused_for_its_own_reason(quiet_run) -> None:
    _, rows, _ = quiet_run
    names = corpus_names()
    assert "dicomdirtests/DICOMDIR" in names and len(names) == 167
    errors = {name: rows[f"pydicom/{name}"]["error"] for name in names}
    assert errors == {name: expected_error(name) for name in names}
    assert len(rows) == len(names) + 3
    assert all(0.0 <= float(rows[f"pydicom/{name}"]["probability"]) <= 1.0 for name in names if not errors[name])


def test_the_three_gaps_of_issue_17_are_scored_or_skipped(quiet_run) -> None:
    _, rows, _ = quiet_run
    assert rows["pydicom/JPEG-lossy.dcm"]["error"] == ""  # 12-bit lossy JPEG
    assert rows["written/CHEST0001"]["error"] == rows["written/chest.dcm"]["error"] == ""  # no Part 10 header
    assert rows["written/CHEST0001"]["probability"] == rows["written/chest.dcm"]["probability"]
    assert rows["pydicom/dicomdirtests/DICOMDIR"]["error"] == DICOMDIR
    assert rows["written/photo.dcm"]["error"] == (
        "not a DICOM file: no DICM marker at byte 128 and no data set at byte 0 (the file holds a JPEG image)"
    )


def test_each_warning_is_one_log_line_with_the_files_path(quiet_run, export: Path) -> None:
    _, _, log = quiet_run
    lines = [line for line in log.splitlines() if line.split(" ")[1] == "warning"]
    warned = {line.split(" ", 2)[2].split(": ", 1)[0] for line in lines}
    assert warned == {str(export / "pydicom" / name) for name in WARNED}
    assert len(lines) == len(WARNED)


def test_docs_tables_are_this_runs(quiet_run, export: Path) -> None:
    _, rows, _ = quiet_run
    tables = docs_tables()
    marked = tables.MARKED.search((REPO / "docs" / "dicom.md").read_text())
    assert marked, "docs/dicom.md has no <!-- dicom-corpus --> block"
    assert marked.group(1) == tables.markdown(tables.outcomes(list(rows.values()), export / "pydicom")), (
        "run python docs/dicom_corpus.py"
    )


def test_without_quiet_each_kind_of_warning_is_one_line_with_a_count(
    tmp_path: Path,
    scorer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the session's model: the view is tested here
    monkeypatch.setattr("xscan.scoring.run.load_scorer", lambda weights=None, **options: scorer)
    for copy in ("a", "b", "c"):
        shutil.copy(PYDICOM_FILES / "badVR.dcm", tmp_path / f"badVR-{copy}.dcm")
    shutil.copy(PYDICOM_FILES / "JPEG-lossy.dcm", tmp_path / "z-lossy.dcm")
    result = CliRunner().invoke(
        app, ["score", str(tmp_path), "-o", str(tmp_path.parent / "warned.csv"), "--no-dicom-filter"]
    )
    warning_lines = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    assert len(warning_lines) == 2, (
        result.stderr
    )  # in the order each kind first occurred: the badVR copies are read first
    assert warning_lines[0] == (
        "warning, 3 times (UserWarning at pydicom/valuerep.py:440): Invalid value for VR IS: '1A'. Please see "
        "<https://dicom.nema.org/medical/dicom/current/output/html/part05.html#table_6.2-1> for allowed values for "
        "each VR."
    )
    assert warning_lines[1].startswith("warning, once (UserWarning at xscan/input/dicom/image.py:")
    assert "JPEG scan header" in warning_lines[1]
