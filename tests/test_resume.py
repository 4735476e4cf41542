"""Resuming a results file: unchanged files skipped, changed ones replaced, kills repaired, other files refused."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import real_scans
from typer.testing import CliRunner

from xscan.cli import app
from xscan.resume import ResultsFileError, ResumableResults
from xscan.scoring import score_paths
from xscan.walk import find_scans

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sixty(tmp_path_factory):
    """60 real scans, 30 of each class, in two sub-folders; tests copy it before changing anything."""
    root = tmp_path_factory.mktemp("sixty") / "scans"
    for label in ("NORMAL", "PNEUMONIA"):
        (root / label).mkdir(parents=True)
        for path in real_scans(label, 30):
            shutil.copy2(path, root / label / path.name)
    return root


@pytest.fixture
def folder(sixty, tmp_path):
    return Path(shutil.copytree(sixty, tmp_path / "scans", copy_function=shutil.copy2))


@pytest.fixture(scope="module")
def reference(sixty, tmp_path_factory):
    """The CSV of one uninterrupted run over `sixty`, as bytes."""
    out = tmp_path_factory.mktemp("reference") / "results.csv"
    result = CliRunner().invoke(app, ["score", str(sixty), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out.read_bytes()


def _run(folder, out, scorer, overwrite=False):
    """One score run through the library, as the CLI does it; returns the tally."""
    with ResumableResults(out, scorer.card.model_id, scorer.card.threshold, overwrite) as results:
        for rows in score_paths(results.plan(find_scans(folder).scans), scorer, batch_size=8, workers=1):
            results.write(rows)
        results.finish()
    return results.tally


def _paths(out):
    return [line.split(",")[0] for line in out.read_text().splitlines()[1:]]


def test_second_run_skips_every_unchanged_file(folder, tmp_path, scorer):
    out = tmp_path / "results.csv"
    first = _run(folder, out, scorer)
    content = out.read_bytes()
    second = _run(folder, out, scorer)
    assert (first.scored, first.skipped) == (60, 0)
    assert (second.scored, second.skipped, second.failed) == (0, 60, 0)
    assert out.read_bytes() == content


def test_new_and_changed_files_are_scored_and_replace_their_rows(folder, tmp_path, scorer):
    out = tmp_path / "results.csv"
    _run(folder, out, scorer)
    changed = folder / "NORMAL" / sorted(os.listdir(folder / "NORMAL"))[0]
    changed.write_bytes(real_scans("PNEUMONIA", 31)[-1].read_bytes())  # another scan, same name
    shutil.copy(real_scans("PNEUMONIA", 32)[-1], folder / "NORMAL" / "new.jpeg")
    tally = _run(folder, out, scorer)
    assert (tally.scored, tally.skipped) == (2, 59)
    paths = _paths(out)
    assert len(paths) == 61 and paths == [str(p) for p in find_scans(folder).scans]
    fresh = tmp_path / "fresh.csv"
    _run(folder, fresh, scorer)
    assert out.read_bytes() == fresh.read_bytes()


def test_files_with_errors_are_tried_again(folder, tmp_path, scorer):
    out = tmp_path / "results.csv"
    (folder / "later.png").write_bytes(b"")
    assert _run(folder, out, scorer).failed == 1
    again = _run(folder, out, scorer)
    assert (again.scored, again.failed, again.skipped) == (0, 1, 60)


def test_overwrite_starts_afresh(folder, tmp_path, scorer):
    out = tmp_path / "results.csv"
    _run(folder, out, scorer)
    assert _run(folder, out, scorer, overwrite=True).scored == 60


def test_rows_of_another_model_are_not_mixed(folder, tmp_path, scorer):
    out = tmp_path / "results.csv"
    _run(folder, out, scorer)
    out.write_text(out.read_text().replace(scorer.card.model_id, "xscan-cnn-0.0.9-deadbeef"))
    before = out.read_bytes()
    with pytest.raises(ResultsFileError, match="rows from model xscan-cnn-0.0.9-deadbeef, not"):
        _run(folder, out, scorer)
    assert out.read_bytes() == before
    assert _run(folder, out, scorer, overwrite=True).scored == 60


def test_a_foreign_file_is_refused_even_with_overwrite(folder, tmp_path, scorer):
    out = tmp_path / "patients.csv"
    out.write_text("patient_id,name\n1,Ada\n")
    for overwrite in (False, True):
        with pytest.raises(ResultsFileError, match="not an xscan results file"):
            _run(folder, out, scorer, overwrite)
    assert out.read_text() == "patient_id,name\n1,Ada\n"
    assert not (tmp_path / "patients.csv.tmp").exists()


def test_torn_last_line_is_repaired(folder, tmp_path, scorer, reference):
    out = tmp_path / "results.csv"
    head = reference[: reference.index(b"\r\n", len(reference) // 2) + 2]
    torn_line = reference[len(head) : reference.index(b"\r\n", len(head))][:-7]  # cut inside mtime_ns
    out.write_bytes(head + torn_line)
    results = ResumableResults(out, scorer.card.model_id, scorer.card.threshold)
    results.finish()
    assert results.repaired and out.read_bytes() == head


def _subprocess_score(folder, out):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "xscan.cli", "score", str(folder), "-o", str(out), "--batch-size", "1", "--workers", "1", "-q"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _rows_written(out):
    try:
        return out.read_bytes().count(b"\r\n") - 1
    except FileNotFoundError:
        return -1


def test_killed_mid_run_then_rerun_equals_an_uninterrupted_run(sixty, tmp_path, reference):
    out = tmp_path / "results.csv"
    process = _subprocess_score(sixty, out)
    deadline = time.monotonic() + 300
    while _rows_written(out) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, process.stderr.read().decode()
    written = _rows_written(out)
    assert 3 <= written < 60, written  # killed mid-run, with rows on disk
    with open(out, "ab") as stream:  # as if the kill had also cut a write short
        stream.write(reference.splitlines(keepends=True)[written + 1][:25])
    rerun = _subprocess_score(sixty, out)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr.decode()
    assert out.read_bytes() == reference
    assert not (tmp_path / "results.csv.tmp").exists()


def test_another_threshold_scores_again_rather_than_mixing_labels(folder, tmp_path, scorer):
    out = tmp_path / "results.csv"
    _run(folder, out, scorer)
    scans = find_scans(folder).scans
    with ResumableResults(out, scorer.card.model_id, 0.3) as results:
        assert results.plan(scans) == scans
    with ResumableResults(out, scorer.card.model_id, scorer.card.threshold) as results:
        assert results.plan(scans) == []
