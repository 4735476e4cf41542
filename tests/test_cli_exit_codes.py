"""`xscan score` as cron sees it: exit codes, messages, the log file, and no traceback for any hostile input."""

import csv
import json
import os
import re
import shutil
from pathlib import Path

import cv2
import pytest
from conftest import real_scans
from typer.testing import CliRunner

from xscan.cli import EXIT_FATAL, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, app
from xscan.model import WEIGHTS_FILE, default_weights_dir
from xscan.walk import find_scans

AWKWARD_NAMES = ["with, comma.jpeg", 'with "quotes".jpeg', "new\nline.jpeg", "  spaces  .jpeg", "Ünïcødé 肺.jpeg"]
NOT_UTF8 = b"latin1-\xe9.jpeg"
EXPECTED_ERRORS = {
    "zero.png": "empty file (0 bytes)",
    "cut.jpeg": "truncated JPEG: no end-of-image marker",
    "page.jpg": "not a JPEG image: the file holds HTML",
    "tiny.png": "image too small to be a radiograph (32x32 pixels)",
}


def _invoke(*args):
    return CliRunner().invoke(app, ["score", *map(str, args)])


def _records(out):
    with open(out, newline="", encoding="utf-8", errors="surrogateescape") as stream:
        return list(csv.DictReader(stream))


def _build_hostile_folder(root):
    """Good scans under awkward names, each hostile file of EXPECTED_ERRORS, and things that are not files to score."""
    good = real_scans("NORMAL", len(AWKWARD_NAMES) + 1)
    for source, name in zip(good, AWKWARD_NAMES, strict=False):
        shutil.copy(source, root / name)
    shutil.copy(good[-1], os.path.join(os.fsencode(root), NOT_UTF8))
    jpeg = real_scans("PNEUMONIA", 1)[0].read_bytes()
    (root / "zero.png").write_bytes(b"")
    (root / "cut.jpeg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "page.jpg").write_text("<html><body>session expired</body></html>\n")
    cv2.imwrite(str(root / "tiny.png"), cv2.resize(cv2.imread(str(good[0]), cv2.IMREAD_GRAYSCALE), (32, 32)))
    (root / "folder.jpg").mkdir()
    (root / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    (root / "loop").symlink_to(root)
    (root / "notes.txt").write_text("not a scan")
    shutil.copy(good[0], root / "scan.jpeg.bak")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """One run over the hostile folder, shared by the tests that read its outcome."""
    base = tmp_path_factory.mktemp("hostile")
    folder = base / "export"
    folder.mkdir()
    _build_hostile_folder(folder)
    out, log = base / "results.csv", base / "xscan.log"
    result = _invoke(folder, "-o", out, "--log-file", log)
    return folder, out, log, result


def test_hostile_folder_finishes_with_exit_1_and_one_row_per_candidate(hostile):
    folder, out, _, result = hostile
    assert result.exit_code == EXIT_SOME_FAILED, result.output
    assert "Traceback" not in result.output
    rows = _records(out)
    assert [r["path"] for r in rows] == [str(p) for p in find_scans(folder).scans]
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["error"]}
    assert errors == EXPECTED_ERRORS
    assert all(r["probability"] for r in rows if not r["error"])


def test_awkward_file_names_round_trip_through_the_csv(hostile):
    folder, out, _, _ = hostile
    names = {Path(r["path"]).name for r in _records(out)}
    assert set(AWKWARD_NAMES) <= names
    assert os.fsdecode(NOT_UTF8) in names
    assert os.path.join(os.fsencode(folder), NOT_UTF8) in out.read_bytes()  # the name's own bytes


def test_paths_not_scanned_are_reported(hostile):
    folder, _, _, result = hostile
    assert f"not-scanned: {folder / 'dangling.jpg'}: broken symbolic link" in result.stderr
    assert f"not-scanned: {folder / 'loop'}: folder already visited (symbolic-link loop)" in result.stderr
    assert re.search(r"scored 6, failed 4 in [\d.]+ s \([\d.]+ images/s\); skipped 0 unchanged", result.stderr)


def test_log_file_has_a_line_per_error_and_a_summary(hostile):
    folder, _, log, _ = hostile
    lines = log.read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
    errors = [line for line in lines if re.match(rf"{stamp} error ", line)]
    assert len(errors) == 4 and any(line.endswith("zero.png: empty file (0 bytes)") for line in errors)
    assert any(re.match(rf"{stamp} not-scanned .*dangling.jpg: broken symbolic link$", line) for line in lines)
    assert re.fullmatch(rf"{stamp} run folder={re.escape(str(folder))} scored=6 skipped=0 failed=4 seconds=[\d.]+ exit=1", lines[-1])


def test_rerun_skips_and_says_so_quiet_prints_nothing(hostile):
    folder, out, log, _ = hostile
    result = _invoke(folder, "-o", out, "--log-file", log, "--quiet")
    assert result.exit_code == EXIT_SOME_FAILED and result.stderr == "" and result.stdout == ""
    assert re.search(r" run folder=.* scored=0 skipped=6 failed=4 ", log.read_text().splitlines()[-1])


def test_all_scored_is_exit_0(scan_folder, tmp_path):
    result = _invoke(scan_folder, "-o", tmp_path / "r.csv")
    assert result.exit_code == EXIT_OK, result.output
    again = _invoke(scan_folder, "-o", tmp_path / "r.csv")
    assert again.exit_code == EXIT_OK and "scored 0, failed 0" in again.stderr and "skipped 12 unchanged" in again.stderr


def test_empty_folder_is_exit_0_with_a_header_only_csv(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _invoke(tmp_path / "empty", "-o", tmp_path / "r.csv")
    assert result.exit_code == EXIT_OK
    assert "no scans found in" in result.stderr
    assert (tmp_path / "r.csv").read_text().splitlines() == ["path,probability,label,threshold,model,error,size,mtime_ns"]


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["{tmp}/missing", "-o", "{tmp}/r.csv"], "is not a folder"),
        (None, ["{folder}", "-o", "{tmp}/r.csv", "--batch-size", "0"], "Invalid value"),
        ("patient_id,name\n1,Ada\n", ["{folder}", "-o", "{tmp}/given.csv"], "is not an xscan results file"),
        ("path,probability,label,threshold,model,error\nx.png,0.1,NORMAL,0.5,other-model,\n",
         ["{folder}", "-o", "{tmp}/given.csv"], "holds rows from model other-model"),
        (None, ["{folder}", "-o", "{tmp}/no/such/folder/r.csv"], "cannot write results file"),
        (None, ["{folder}", "-o", "{tmp}/r.csv", "--log-file", "{tmp}"], "cannot open log file"),
    ],
    ids=["missing-folder", "bad-option", "foreign-results", "other-model", "unwritable-output", "unwritable-log"],
)
def test_usage_errors_are_exit_2(tmp_path, setup, args, message):
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(real_scans("NORMAL", 1)[0], folder)
    if setup:
        (tmp_path / "given.csv").write_text(setup)
    result = _invoke(*(a.format(tmp=tmp_path, folder=folder) for a in args))
    assert result.exit_code == EXIT_USAGE
    assert message in result.output and "Traceback" not in result.output
    if setup:
        assert (tmp_path / "given.csv").read_text() == setup


def test_weights_that_do_not_load_are_fatal_exit_3(scan_folder, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    card = json.loads((default_weights_dir() / "model-card.json").read_text()) | {"weights_sha256": ""}
    (weights / "model-card.json").write_text(json.dumps(card))
    (weights / WEIGHTS_FILE).write_bytes(b"\x89HDF\r\n\x1a\n not really an HDF5 file")
    result = _invoke(scan_folder, "-o", tmp_path / "r.csv", "--weights", weights, "--quiet")
    assert result.exit_code == EXIT_FATAL
    assert "cannot load" in result.stderr and "Traceback" not in result.output


def test_unexpected_error_is_exit_3_without_traceback_unless_debug(scan_folder, tmp_path, monkeypatch):
    def broken_pipeline(*args, **kwargs):
        raise RuntimeError("worker pool fell over")

    monkeypatch.setattr("xscan.scoring.score_paths", broken_pipeline)
    result = _invoke(scan_folder, "-o", tmp_path / "r.csv", "--log-file", tmp_path / "log")
    assert result.exit_code == EXIT_FATAL
    assert "unexpected RuntimeError: worker pool fell over (--debug shows the traceback)" in result.stderr
    assert "Traceback" not in result.output
    assert "fatal unexpected RuntimeError: worker pool fell over (exit 3)" in (tmp_path / "log").read_text()
    debug = _invoke(scan_folder, "-o", tmp_path / "r.csv", "--debug")
    assert isinstance(debug.exception, RuntimeError)


def test_help_documents_the_exit_codes():
    result = CliRunner().invoke(app, ["score", "--help"])
    for line in ("0    every file scored", "1    finished, but some files have errors", "2    usage error", "3    fatal"):
        assert line in result.stdout
