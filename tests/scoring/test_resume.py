"""Resuming a results file: unchanged files not read again, changed ones replaced, kills repaired, other files refused.

Also the state file beside it (xscan.scoring.state): a 17-column results file upgraded with nothing scored
again, a deleted state file or CSV, and the run numbers drift reads.
"""

import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path

import pytest
from support.data import REPO, real_scans

from xscan.errors import EXIT_SOME_FAILED, ResultsFileError
from xscan.input.walk import find_scans
from xscan.scoring.options import ScoreOptions
from xscan.scoring.results import LEGACY_COLUMNS, MEASURE_COLUMNS, RESULT_COLUMNS, RUN_COLUMN, read_table
from xscan.scoring.resume import ResumableResults
from xscan.scoring.run import Repaired, score_folder
from xscan.scoring.state import state_path

# The header of a results file before the state file: bookkeeping between `error` and `scope`, which came last.
LAYOUT_17 = ["path", "probability", "label", "threshold", "model", "error", *LEGACY_COLUMNS, "scope"]


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
def reference_file(sixty, tmp_path_factory, scorer):
    """The results file of one uninterrupted run over `sixty`, its state file beside it."""
    out = tmp_path_factory.mktemp("reference") / "results.csv"
    assert score_folder(sixty, out, scorer=scorer).exit_code == 0
    return out


@pytest.fixture(scope="module")
def reference(reference_file):
    """The CSV of one uninterrupted run over `sixty`, as bytes."""
    return reference_file.read_bytes()


def _run(folder, out, scorer, overwrite=False):
    return score_folder(folder, out, ScoreOptions(batch_size=8, workers=1, overwrite=overwrite), scorer=scorer)


def _without(results, *columns):
    """The records of a results file (a path, or its bytes) without COLUMNS: the CSV's cells alone."""
    if isinstance(results, bytes):
        path = Path(tempfile.mkdtemp()) / "results.csv"
        path.write_bytes(results)
        results = path
    return [{k: v for k, v in record.items() if k not in columns} for record in read_table(results).records]


def _runs(out):
    """The run that wrote each row, from the state file, by file name."""
    return {Path(record["path"]).name: record[RUN_COLUMN] for record in read_table(out).with_state()}


def _state_rows(out):
    with closing(sqlite3.connect(state_path(out))) as connection:
        return connection.execute("SELECT count(*) FROM files").fetchone()[0]


def _paths(out):
    return [line.split(",")[0] for line in out.read_text().splitlines()[1:]]


def test_second_run_does_not_read_unchanged_files_again(folder, tmp_path, scorer):
    out = tmp_path / "results.csv"
    first = _run(folder, out, scorer)
    content = out.read_bytes()
    second = _run(folder, out, scorer)
    assert (first.scored, first.unchanged) == (60, 0)
    assert (second.scored, second.unchanged, second.failed, second.exit_code) == (0, 60, 0, 0)
    assert out.read_bytes() == content


def test_new_and_changed_files_are_scored_and_replace_their_rows(folder, tmp_path, scorer):
    out = tmp_path / "results.csv"
    _run(folder, out, scorer)
    changed = folder / "NORMAL" / sorted(os.listdir(folder / "NORMAL"))[0]
    changed.write_bytes(real_scans("PNEUMONIA", 31)[-1].read_bytes())  # another scan, same name
    shutil.copy(real_scans("PNEUMONIA", 32)[-1], folder / "NORMAL" / "new.jpeg")
    summary = _run(folder, out, scorer)
    assert (summary.scored, summary.unchanged) == (2, 59)
    paths = _paths(out)
    assert len(paths) == 61 and paths == [str(p) for p in find_scans(folder).scans]
    fresh = tmp_path / "fresh.csv"
    _run(folder, fresh, scorer)
    assert _without(out) == _without(fresh)
    runs = _runs(out)
    assert (runs.pop(changed.name), runs.pop("new.jpeg")) == ("2", "2") and set(runs.values()) == {"1"}


def test_files_with_errors_are_tried_again(folder, tmp_path, scorer):
    out = tmp_path / "results.csv"
    (folder / "later.png").write_bytes(b"")
    assert _run(folder, out, scorer).failed == 1
    again = _run(folder, out, scorer)
    assert (again.scored, again.failed, again.unchanged, again.exit_code) == (0, 1, 60, EXIT_SOME_FAILED)


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
    torn_line = reference[len(head) : reference.index(b"\r\n", len(head))][:-7]  # cut inside the model
    out.write_bytes(head + torn_line)
    results = ResumableResults(out, scorer.card.model_id, scorer.card.threshold)
    results.finish()
    assert results.repaired and out.read_bytes() == head


# Scores in a process of its own and stops for good, mid-run, once 3 rows are on disk: it says so on
# standard output, then waits for the kill inside the event callback.
STOP_AFTER_3_ROWS = """
import sys, threading
from pathlib import Path
from xscan.scoring.options import ScoreOptions
from xscan.scoring.results import MEASURE_COLUMNS, RUN_COLUMN, read_table
from xscan.scoring.run import RowsWritten, score_folder

written = 0

def on_event(event):
    global written
    if isinstance(event, RowsWritten):
        written += len(event.rows)
        if written == 3:
            print("3 rows written", flush=True)
            threading.Event().wait()

score_folder(Path(sys.argv[1]), Path(sys.argv[2]), ScoreOptions(batch_size=1, workers=1), on_event=on_event)
"""


def test_killed_mid_run_then_rerun_equals_an_uninterrupted_run(sixty, tmp_path, reference, scorer):
    out = tmp_path / "results.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    scoring = subprocess.Popen(
        [sys.executable, "-c", STOP_AFTER_3_ROWS, str(sixty), str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    said = scoring.stdout.readline()  # returns once the process is stopped mid-run (or has died)
    scoring.kill()
    assert scoring.wait() == -signal.SIGKILL and said == b"3 rows written\n", scoring.stderr.read().decode()
    assert len(out.read_bytes().splitlines()) == 1 + 3  # the header and the three rows, flushed before the kill
    with open(out, "ab") as stream:  # as if the kill had also cut a write short
        stream.write(reference.splitlines(keepends=True)[4][:25])
    events = []
    rerun = score_folder(sixty, out, scorer=scorer, on_event=events.append)
    assert Repaired(str(out)) in events and (rerun.unchanged, rerun.scored, rerun.exit_code) == (3, 57, 0)
    assert out.read_bytes() == reference
    assert sorted(_runs(out).values()) == ["1"] * 3 + ["2"] * 57  # the rows scored after the kill are of run 2
    assert not (tmp_path / "results.csv.tmp").exists() and _state_rows(out) == 60


def test_another_threshold_scores_again_rather_than_mixing_labels(folder, tmp_path, scorer):
    out = tmp_path / "results.csv"
    _run(folder, out, scorer)
    scans = find_scans(folder).scans
    with ResumableResults(out, scorer.card.model_id, 0.3) as results:
        assert results.plan(scans, folder) == scans
    with ResumableResults(out, scorer.card.model_id, scorer.card.threshold) as results:
        assert results.plan(scans, folder) == []


def _write_layout(out, columns, records):
    with open(out, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)


def test_a_17_column_results_file_is_upgraded_on_its_next_run_with_nothing_scored_again(
    sixty, tmp_path, reference_file, scorer
):
    out = tmp_path / "results.csv"
    old = read_table(reference_file).with_state()  # what the 17-column layout held, run 1 of each file
    _write_layout(out, LAYOUT_17, old)
    assert read_table(out).legacy and read_table(out).with_state() == old  # readers take it as it is
    again = score_folder(sixty, out, scorer=scorer)
    assert (again.scored, again.unchanged, again.exit_code) == (0, 60, 0)
    assert out.read_bytes() == reference_file.read_bytes()  # the new layout, the same rows
    assert read_table(out).with_state() == old  # identities, runs and drift statistics now in the state file
    assert not read_table(out).legacy and _state_rows(out) == 60


def test_a_results_file_from_before_the_inode_ctime_and_resolved_path_columns_resumes(
    sixty, tmp_path, reference_file, scorer
):
    out = tmp_path / "results.csv"
    _write_layout(out, [*RESULT_COLUMNS[:6], "size", "mtime_ns"], read_table(reference_file).with_state())
    again = score_folder(sixty, out, scorer=scorer)
    assert (again.scored, again.unchanged, again.exit_code) == (0, 60, 0)
    # The scope column added blank (these rows are in scope); the drift statistics and run stay blank: not read again.
    assert out.read_bytes() == reference_file.read_bytes()
    assert {
        column: record[column] for record in read_table(out).with_state() for column in (*MEASURE_COLUMNS, RUN_COLUMN)
    } == dict.fromkeys((*MEASURE_COLUMNS, RUN_COLUMN), "")


def test_a_deleted_state_file_scores_every_file_again_and_loses_no_row(sixty, tmp_path, reference_file, scorer):
    out = tmp_path / "results.csv"
    shutil.copy(reference_file, out)  # the CSV alone: nothing tells that its files are unchanged since
    again = score_folder(sixty, out, scorer=scorer)
    assert (again.scored, again.unchanged, again.exit_code) == (60, 0, 0)
    assert out.read_bytes() == reference_file.read_bytes() and set(_runs(out).values()) == {"1"}


def test_a_deleted_csv_leaves_no_row_claimed_by_the_state_file(folder, tmp_path, scorer):
    out = tmp_path / "results.csv"
    _run(folder, out, scorer)
    out.unlink()
    scans = find_scans(folder).scans
    with ResumableResults(out, scorer.card.model_id, scorer.card.threshold) as results:
        assert results.plan(scans, folder) == scans  # the CSV is the truth for rows: every file scored again
        assert _state_rows(out) == 0 and read_table(out).records == []
    assert _run(folder, out, scorer).scored == 60 and _state_rows(out) == 60


def test_a_rerun_with_nothing_new_leaves_the_file_alone_and_one_new_file_is_cheap(folder, tmp_path, scorer):
    out = tmp_path / "results.csv"
    _run(folder, out, scorer)
    inode = out.stat().st_ino
    assert _run(folder, out, scorer).unchanged == 60 and out.stat().st_ino == inode  # not even rewritten
    shutil.copy(real_scans("PNEUMONIA", 31)[-1], folder / "PNEUMONIA" / "received.jpeg")
    summary = _run(folder, out, scorer)
    assert (summary.scored, summary.unchanged) == (1, 60) and len(_paths(out)) == 61 and _state_rows(out) == 61


def test_a_damaged_state_file_is_refused_naming_it_and_overwrite_starts_afresh(folder, tmp_path, scorer):
    out = tmp_path / "results.csv"
    _run(folder, out, scorer)
    state_path(out).write_bytes(b"not a database, whatever wrote it" * 100)
    with pytest.raises(ResultsFileError, match=r"results.csv.state.sqlite \(the state file of .*\) is damaged"):
        _run(folder, out, scorer)
    assert _run(folder, out, scorer, overwrite=True).scored == 60 and _state_rows(out) == 60
