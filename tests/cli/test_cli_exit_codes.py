"""`xscan score` as cron sees it: exit codes, messages, the log file, and no traceback for any hostile input.

Typer's runner reports an uncaught exception as exit code 1 and never shows a traceback, so the
exit codes that matter, and the absence of tracebacks, are checked on real processes too.
"""

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.data import real_scans
from support.hostile import AWKWARD_NAMES, EXPECTED_ERRORS, NOT_UTF8, build_hostile_folder
from support.processes import ENV
from support.stand_in import stand_in_loader
from typer.testing import CliRunner

from xscan.cli import app
from xscan.errors import (
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOFTWARE,
    EXIT_SOME_FAILED,
    EXIT_TERMINATED,
    EXIT_USAGE,
)
from xscan.input.walk import find_scans
from xscan.model.card import default_weights_dir
from xscan.scoring.results import results_columns


def _invoke(*args):
    result = CliRunner().invoke(app, ["score", *map(str, args)])
    # The runner turns an uncaught exception into exit code 1: only a SystemExit is an exit of xscan's own.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def _process(*args, driver=None):
    """`xscan score ARGS` in a process of its own (or the DRIVER script, which runs the CLI with ARGS)."""
    command = (
        [sys.executable, "-c", driver, *map(str, args)]
        if driver
        else [sys.executable, "-m", "xscan.cli", "score", *map(str, args)]
    )
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)


def _records(out):
    with open(out, newline="", encoding="utf-8", errors="surrogateescape") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """One run over the hostile folder, shared by the tests that read its outcome."""
    base = tmp_path_factory.mktemp("hostile")
    folder = base / "export"
    folder.mkdir()
    build_hostile_folder(folder)
    out, log = base / "results.csv", base / "xscan.log"
    result = _invoke(folder, "-o", out, "--log-file", log)
    return folder, out, log, result


def test_hostile_folder_finishes_with_exit_4_and_one_row_per_candidate(hostile):
    folder, out, _, result = hostile
    assert result.exit_code == EXIT_SOME_FAILED, result.output
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
    assert re.search(
        r"scored 6, failed 4 in [\d.]+ s \([\d.]+ images/s\); 0 unchanged, not read again$", result.stderr, flags=re.M
    )


def test_log_file_has_a_line_per_error_and_a_summary(hostile):
    folder, _, log, _ = hostile
    lines = log.read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
    errors = [line for line in lines if re.match(rf"{stamp} error ", line)]
    assert len(errors) == 4 and any(line.endswith("zero.png: empty file (0 bytes)") for line in errors)
    assert any(re.match(rf"{stamp} not-scanned .*dangling.jpg: broken symbolic link$", line) for line in lines)
    assert re.fullmatch(
        rf"{stamp} run folder={re.escape(str(folder))} scored=6 unchanged=0 skipped=0 failed=4 seconds=[\d.]+ "
        r"workers=\d+ exit=4",
        lines[-1],
    )


def test_rerun_skips_and_says_so_quiet_prints_nothing(hostile):
    folder, out, log, _ = hostile
    result = _invoke(folder, "-o", out, "--log-file", log, "--quiet")
    assert result.exit_code == EXIT_SOME_FAILED and result.stderr == "" and result.stdout == ""
    assert re.search(r" run folder=.* scored=0 unchanged=6 skipped=0 failed=4 ", log.read_text().splitlines()[-1])


def test_all_scored_is_exit_0(scan_folder, tmp_path):
    result = _invoke(scan_folder, "-o", tmp_path / "r.csv")
    assert result.exit_code == EXIT_OK, result.output
    again = _invoke(scan_folder, "-o", tmp_path / "r.csv")
    assert (
        again.exit_code == EXIT_OK
        and "scored 0, failed 0" in again.stderr
        and "12 unchanged, not read again" in again.stderr
    )


def test_empty_folder_is_exit_0_with_a_header_only_csv(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _invoke(tmp_path / "empty", "-o", tmp_path / "r.csv")
    assert result.exit_code == EXIT_OK
    assert "no scans found in" in result.stderr
    assert (tmp_path / "r.csv").read_text().splitlines() == [",".join(results_columns())]


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["{tmp}/missing", "-o", "{tmp}/r.csv"], "is not a folder"),
        (None, ["{folder}", "-o", "{tmp}/r.csv", "--batch-size", "0"], "Invalid value"),
        ("patient_id,name\n1,Ada\n", ["{folder}", "-o", "{tmp}/given.csv"], "is not an xscan results file"),
        (
            "path,probability,label,threshold,model,error\nx.png,0.1,NORMAL,0.5,other-model,\n",
            ["{folder}", "-o", "{tmp}/given.csv"],
            "holds rows from model other-model",
        ),
        (None, ["{folder}", "-o", "{tmp}/no/such/folder/r.csv"], "cannot write results file"),
        (None, ["{folder}", "-o", "{tmp}/r.csv", "--log-file", "{tmp}"], "cannot open log file"),
    ],
    ids=["missing-folder", "bad-option", "foreign-results", "other-model", "unwritable-output", "unwritable-log"],
)
def test_usage_errors_are_exit_2_before_the_model_loads(tmp_path, setup, args, message, monkeypatch):
    def no_model(weights, **options):
        raise AssertionError("the model was loaded before the usage error was found")

    monkeypatch.setattr("xscan.scoring.run.load_scorer", no_model)
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(real_scans("NORMAL", 1)[0], folder)
    if setup:
        (tmp_path / "given.csv").write_text(setup)
    result = _invoke(*(a.format(tmp=tmp_path, folder=folder) for a in args))
    assert result.exit_code == EXIT_USAGE
    assert message in result.output
    if setup:
        assert (tmp_path / "given.csv").read_text() == setup


def test_weights_that_do_not_load_are_fatal_exit_3(scan_folder, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    card = json.loads((default_weights_dir() / "model-card.json").read_text())
    broken = b"TFL3 not really a LiteRT flatbuffer"  # its sha256 in the card: the file matches, and does not load
    card["litert"] |= {"sha256": hashlib.sha256(broken).hexdigest()}
    (weights / "model-card.json").write_text(json.dumps(card))
    (weights / card["litert"]["file"]).write_bytes(broken)
    result = _invoke(scan_folder, "-o", tmp_path / "r.csv", "--weights", weights, "--quiet")
    assert result.exit_code == EXIT_FATAL
    assert "cannot load" in result.stderr
    to_stdout = _invoke(scan_folder, "-o", "-", "--weights", weights, "--quiet")
    assert to_stdout.exit_code == EXIT_FATAL and to_stdout.stdout == ""  # not even a header


def test_unexpected_error_is_exit_70_with_a_message_and_a_log_line(scan_folder, tmp_path, monkeypatch):
    def broken_pipeline(*args, **kwargs):
        raise RuntimeError("worker pool fell over")

    monkeypatch.setattr("xscan.scoring.run.load_scorer", stand_in_loader)
    monkeypatch.setattr("xscan.scoring.run.score_paths", broken_pipeline)
    result = _invoke(scan_folder, "-o", tmp_path / "r.csv", "--log-file", tmp_path / "log")
    assert result.exit_code == EXIT_SOFTWARE
    message = "unexpected RuntimeError: worker pool fell over (a bug in xscan: --debug shows the traceback)"
    assert message in result.stderr
    assert "fatal unexpected RuntimeError: worker pool fell over (exit 70)" in (tmp_path / "log").read_text()


# ---- real processes: the exit code the shell sees, and no traceback


def test_a_real_run_over_hostile_files_exits_4_without_a_traceback(hostile, tmp_path):
    folder, _, _, _ = hostile
    done = _process(folder, "-o", tmp_path / "r.csv")
    assert done.returncode == EXIT_SOME_FAILED, done.stderr
    assert "scored 6, failed 4 in " in done.stderr and "Traceback" not in done.stderr


def test_a_real_usage_error_exits_2_without_a_traceback(tmp_path):
    done = _process(tmp_path / "missing", "-o", tmp_path / "r.csv")
    assert done.returncode == EXIT_USAGE and "is not a folder" in done.stderr and "Traceback" not in done.stderr


# Runs the CLI with the stand-in scorer (nothing loads TensorFlow) and a scoring step that fails as
# argv[1] says: an unexpected error, Ctrl-C, or SIGTERM.
FAILING_RUN = """
import os, signal, sys
import xscan.scoring.run
from support.stand_in import stand_in_loader
from xscan.cli import app

def failing_scoring(paths, scorer, options, **kwargs):
    if sys.argv[1] == "ctrl-c":
        os.kill(os.getpid(), signal.SIGINT)
    if sys.argv[1] == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
    raise RuntimeError("worker pool fell over")

xscan.scoring.run.load_scorer = stand_in_loader
xscan.scoring.run.score_paths = failing_scoring
# Ctrl-C as in a terminal: a job a shell starts in the background (the suite run with `&`) has SIGINT ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
app(["score", *sys.argv[2:]], prog_name="xscan")
"""


@pytest.mark.parametrize(
    ("failure", "code", "message"),
    [
        ("bug", EXIT_SOFTWARE, "error: unexpected RuntimeError: worker pool fell over (a bug in xscan: --debug shows"),
        ("ctrl-c", EXIT_INTERRUPTED, "error: interrupted; run the same command again to resume"),
        ("sigterm", EXIT_TERMINATED, "error: terminated (SIGTERM); run the same command again to resume"),
    ],
)
def test_a_real_process_exits_with_the_documented_code_and_no_traceback(scan_folder, tmp_path, failure, code, message):
    done = _process(failure, scan_folder, "-o", tmp_path / "r.csv", driver=FAILING_RUN)
    assert done.returncode == code, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_debug_lets_the_traceback_through(scan_folder, tmp_path):
    done = _process("bug", scan_folder, "-o", tmp_path / "r.csv", "--debug", driver=FAILING_RUN)
    assert "Traceback" in done.stderr and "RuntimeError: worker pool fell over" in done.stderr
    assert done.returncode == EXIT_SOFTWARE  # the same code as without --debug: 1 stays Python's own


def test_help_documents_the_exit_codes():
    result = CliRunner().invoke(app, ["score", "--help"])
    for line in (
        "0    every file scored",
        "2    usage error",
        "3    fatal",
        "70   a bug in xscan",
        "4    finished, but some files could not be read",
        "130  interrupted",
        "143  terminated",
    ):
        assert line in result.stdout
