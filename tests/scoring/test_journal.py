"""The in-flight journal (in the state file): crash counts from what a dead run left, suspects decoded first."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest
from support.data import real_scans
from support.stand_in import StandIn

import xscan.scoring.pipeline
from xscan.scoring.journal import CRASHED_TWICE, RAISED_TWICE, InFlightJournal, journal_path
from xscan.scoring.options import ScoreOptions
from xscan.scoring.resume import fingerprint
from xscan.scoring.run import score_folder
from xscan.scoring.state import state_path

IDENTITY = {"resolved_path": "/data/export/a.jpeg", "size": "10", "mtime_ns": "5", "inode": "7", "ctime_ns": "9"}


def died_while_decoding(output: Path, *identities: dict[str, str]) -> None:
    """A process that opens the journal and dies (no clean-up at all) while decoding IDENTITIES."""
    child = os.fork()
    if child == 0:
        journal = InFlightJournal(output)
        decoding = [journal.in_flight(identity) for identity in identities]
        for file in decoding:
            file.__enter__()
        os._exit(0)  # with DECODING still held: nothing is marked done
    assert os.waitpid(child, 0)[1] == 0


def test_a_file_in_flight_when_a_run_died_counts_one_crash_per_run(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    assert InFlightJournal(out).crashes(IDENTITY) == 0
    died_while_decoding(out, IDENTITY)
    assert InFlightJournal(out).crashes(IDENTITY) == 1
    died_while_decoding(out, IDENTITY)
    assert InFlightJournal(out).crashes(IDENTITY) == 2
    assert InFlightJournal(out).crashes(IDENTITY | {"size": "11"}) == 0  # another file now: it starts afresh


def test_a_decode_that_ends_or_is_interrupted_clears_the_count(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    died_while_decoding(out, IDENTITY)
    journal = InFlightJournal(out)
    with journal.in_flight(IDENTITY):
        pass
    journal.__exit__(None, None, None)
    assert InFlightJournal(out).crashes(IDENTITY) == 0
    died_while_decoding(out, IDENTITY)
    journal = InFlightJournal(out)
    with pytest.raises(KeyboardInterrupt), journal.in_flight(IDENTITY):
        raise KeyboardInterrupt  # Ctrl-C is the user's, not the file's
    journal.__exit__(None, None, None)
    assert InFlightJournal(out).crashes(IDENTITY) == 0


def test_an_unexpected_exception_counts_as_a_crash_and_names_itself_in_the_skip_reason(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    for run in (1, 2):
        journal = InFlightJournal(out)
        with pytest.raises(AttributeError), journal.in_flight(IDENTITY):
            raise AttributeError(f"a bug, run {run}")  # the run ends with exit 3
        journal.__exit__(None, None, None)
        assert InFlightJournal(out).crashes(IDENTITY) == run
    assert InFlightJournal(out).skip_reason(IDENTITY) == RAISED_TWICE.format(error="AttributeError: a bug, run 2")
    died_while_decoding(tmp_path / "other.csv", IDENTITY)
    assert InFlightJournal(tmp_path / "other.csv").skip_reason(IDENTITY) == CRASHED_TWICE


def _crashes_table(out: Path) -> list[tuple]:
    with closing(sqlite3.connect(state_path(out))) as connection:
        return connection.execute("SELECT * FROM crashes").fetchall()


def test_close_keeps_the_counts_of_files_still_there_and_forgets_the_others(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    other = IDENTITY | {"resolved_path": "/data/export/gone.jpeg"}
    died_while_decoding(out, IDENTITY, other)
    journal = InFlightJournal(out)
    assert journal.recorded() == {IDENTITY["resolved_path"]: 1, other["resolved_path"]: 1}
    journal.close(keep={IDENTITY["resolved_path"]})
    assert _crashes_table(out) == [(IDENTITY["resolved_path"], 10, 5, 7, 1, "")]
    journal = InFlightJournal(out)
    with journal.in_flight(IDENTITY):
        pass
    journal.close(keep={IDENTITY["resolved_path"]})
    assert _crashes_table(out) == [] and InFlightJournal(out).recorded() == {}


def test_a_journal_file_from_before_the_state_file_is_taken_in_once_a_cut_line_passed_over(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    other = IDENTITY | {"resolved_path": "/data/export/b.jpeg"}
    lines = [
        {"crashed": other["resolved_path"], "identity": ["10", "5", "7"], "count": 1},
        {"start": IDENTITY["resolved_path"], "identity": ["10", "5", "7"]},
    ]
    journal_path(out).write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"start": "/data/exp')
    journal = InFlightJournal(out)
    assert (journal.crashes(IDENTITY), journal.crashes(other)) == (1, 1) and not journal_path(out).exists()
    journal.__exit__(None, None, None)
    assert InFlightJournal(out).crashes(IDENTITY) == 1  # counted once, not again at the next opening


def test_suspects_are_decoded_first_and_alone_and_twice_crashed_files_not_at_all(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    for source, name in zip(real_scans("NORMAL", 6), "abcdef", strict=True):
        shutil.copy(source, folder / f"{name}.jpeg")
    out = tmp_path / "r.csv"
    loads, active, lock = [], [0], threading.Lock()
    real_load_scan = xscan.scoring.pipeline.load_scan

    def watched_load_scan(path, *args, **kwargs):
        with lock:
            active[0] += 1
            loads.append((path.name, active[0]))
        try:
            return real_load_scan(path, *args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(xscan.scoring.pipeline, "load_scan", watched_load_scan)
    identity = {path.name: {"resolved_path": str(path)} | fingerprint(path) for path in folder.iterdir()}
    died_while_decoding(out, identity["b.jpeg"], identity["e.jpeg"], identity["f.jpeg"])  # one crash each
    died_while_decoding(out, identity["f.jpeg"])  # f twice
    summary = score_folder(folder, out, ScoreOptions(workers=4, batch_size=2), scorer=StandIn())
    assert loads[:2] == [("b.jpeg", 1), ("e.jpeg", 1)]  # alone, before the others
    assert sorted(name for name, _ in loads[2:]) == ["a.jpeg", "c.jpeg", "d.jpeg"]
    assert (summary.scored, summary.failed) == (5, 1)
    assert CRASHED_TWICE in out.read_text()
    assert InFlightJournal(out).recorded() == {str(folder / "f.jpeg"): 2}  # the others decoded: forgotten
