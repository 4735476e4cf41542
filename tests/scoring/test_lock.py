"""The results file's lock: one holder at a time, refused at once or waited for, released when its holder ends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xscan.errors import EXIT_USAGE, ResultsFileError, ResultsLockedError
from xscan.scoring.lock import lock_path, results_lock


def test_a_second_holder_is_refused_naming_the_lock_and_the_process(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    with results_lock(out) as held:
        assert held == lock_path(out) == tmp_path / "r.csv.lock"
        with pytest.raises(ResultsLockedError, match=rf"its lock {held} is held") as refused:
            with results_lock(out):  # a second open file description: flock treats it as another run
                pass
        assert f"(process {os.getpid()})" in str(refused.value) and refused.value.exit_code == EXIT_USAGE
    with results_lock(out):  # released
        pass
    assert lock_path(out).exists()  # the file stays; only the lock goes


def test_no_lock_file_beside_the_results_is_a_results_file_error(tmp_path: Path) -> None:
    with pytest.raises(ResultsFileError, match="cannot create its lock file"):
        with results_lock(tmp_path / "missing" / "r.csv"):
            pass
