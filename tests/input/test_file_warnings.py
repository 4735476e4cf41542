"""Warnings kept per file, and told by a run as events, each with its file's path.

Each thread's warnings go in its own file's list, every time, none printed, Python's state restored.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
from pydicom.misc import warn_and_log
from support.dicom import PYDICOM_FILES
from support.processes import ENV

from xscan.input.file_warnings import FileWarning, collected, hand_over, tally, warnings_kept
from xscan.scoring.options import DicomOptions, ScoreOptions
from xscan.scoring.run import Event, RowsWritten, Warned, score_folder

PYDICOM_LOG = logging.getLogger("pydicom")


def read_a_file(number: int, start: threading.Barrier, found: dict[int, list[FileWarning]]) -> None:
    """What reading one odd file does: the same warning three times, a pydicom warning, a pydicom log record."""
    with collected() as raised:
        start.wait()  # all threads warn at once
        for _ in range(3):
            warnings.warn(f"odd file {number}", UserWarning, stacklevel=1)
        warn_and_log(f"pydicom on file {number}")  # a warning and a log record: kept once
        PYDICOM_LOG.warning("logged only, file %d", number)
        try:
            raise ValueError("the decoder failed")
        except ValueError as error:
            PYDICOM_LOG.exception(error)  # becomes the file's error: not kept as a warning
    found[number] = raised


class RecordsSeen(logging.Handler):
    """A log handler that keeps every record it is given."""

    def __init__(self) -> None:
        """Start with no records."""
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record."""
        self.records.append(record)


def test_each_thread_keeps_its_own_warnings_every_time_and_none_is_shown(capsys: pytest.CaptureFixture[str]) -> None:
    filters, shown = list(warnings.filters), warnings.showwarning
    found: dict[int, list[FileWarning]] = {}
    start = threading.Barrier(8)
    root_handler = RecordsSeen()  # as an application that logs to stderr would have
    logging.getLogger().addHandler(root_handler)
    try:
        with warnings_kept():
            threads = [threading.Thread(target=read_a_file, args=(number, start, found)) for number in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        logging.getLogger().removeHandler(root_handler)
    assert root_handler.records == []
    for number in range(8):
        assert [(warning.category, warning.message) for warning in found[number]] == [
            *[("UserWarning", f"odd file {number}")] * 3,
            ("UserWarning", f"pydicom on file {number}"),
            ("WARNING", f"logged only, file {number}"),
        ]
    # Below the import root it was found in: tests/ (pyproject's pythonpath), or tests/input/ where run from there.
    assert found[0][0].origin.rsplit(":", 1)[0] in ("input/test_file_warnings.py", "test_file_warnings.py")
    assert capsys.readouterr() == ("", "")
    assert warnings.filters == filters and warnings.showwarning is shown and PYDICOM_LOG.propagate


def stderr_of(code: str) -> str:
    """What a user sees on stderr while CODE runs in a fresh interpreter, with collected and warnings_kept imported.

    A fresh one, because pytest records the warnings of a test and restores Python's own showwarning
    inside pytest.warns: the hook could pass a warning on to nowhere and such a test would not see it.
    """
    script = "import warnings\nfrom xscan.input.file_warnings import collected, warnings_kept\n" + code
    done = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_without_a_run_warnings_reach_stderr_as_python_shows_them() -> None:
    stderr = stderr_of(
        "with warnings_kept():\n"
        "    pass  # a run came and went\n"
        "with collected() as raised:\n"
        "    warnings.warn('shown as usual', UserWarning, stacklevel=1)\n"
        "assert raised == [], raised\n"
    )
    assert stderr == "<string>:6: UserWarning: shown as usual\n"


def test_a_thread_outside_collected_is_shown_as_usual_during_a_run() -> None:
    stderr = stderr_of(
        "with warnings_kept():\n"
        "    warnings.warn('outside any file', UserWarning, stacklevel=1)\n"
        "    with collected() as raised:\n"
        "        warnings.warn('kept with its file', UserWarning, stacklevel=1)\n"
        "assert [warning.message for warning in raised] == ['kept with its file'], raised\n"
    )
    assert stderr == "<string>:4: UserWarning: outside any file\n"


def test_overlapping_runs_install_once_and_restore_at_the_last() -> None:
    shown = warnings.showwarning
    with warnings_kept():
        kept = warnings.showwarning
        with warnings_kept():
            assert warnings.showwarning is kept
        assert warnings.showwarning is kept
        with collected() as raised:
            warnings.warn("still kept", UserWarning, stacklevel=1)
        assert [warning.message for warning in raised] == ["still kept"]
    assert warnings.showwarning is shown


def test_tally_counts_each_kind_of_warning_by_origin_in_order_of_first_occurrence() -> None:
    found = [
        FileWarning("UserWarning", "pydicom/valuerep.py:440", "Invalid value for VR IS: '1A'"),
        FileWarning("UserWarning", "pydicom/filereader.py:402", "Expected explicit VR, but found implicit VR"),
        FileWarning("UserWarning", "pydicom/valuerep.py:440", "Invalid value for VR IS: '2B'"),
    ]
    assert [(kind.origin, kind.count, kind.first_message) for kind in tally(found)] == [
        ("pydicom/valuerep.py:440", 2, "Invalid value for VR IS: '1A'"),
        ("pydicom/filereader.py:402", 1, "Expected explicit VR, but found implicit VR"),
    ]


def test_hand_over_files_a_readers_warnings_under_the_taking_threads_list() -> None:
    from_reader = [FileWarning("UserWarning", "pydicom/valuerep.py:440", "odd", Path("a.dcm"))]
    hand_over(from_reader)  # no list on this thread: nowhere to go, and no error
    with collected() as raised:
        hand_over(from_reader)
    assert raised == from_reader


def test_a_run_tells_each_files_warnings_with_its_path_before_its_rows_and_prints_none(
    tmp_path: Path,
    scorer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(PYDICOM_FILES / "badVR.dcm", scans / "padded.dcm")
    shutil.copy(PYDICOM_FILES / "MR_small.dcm", scans / "plain.dcm")
    events: list[Event] = []
    score_folder(
        scans,
        tmp_path / "results.csv",
        ScoreOptions(dicom=DicomOptions(frontal_only=False)),
        scorer=scorer,
        on_event=events.append,
    )
    warned = [event.warning for event in events if isinstance(event, Warned)]
    assert [(warning.path, warning.origin) for warning in warned] == [(scans / "padded.dcm", "pydicom/valuerep.py:440")]
    kinds = [type(event) for event in events]
    assert kinds.index(Warned) < kinds.index(RowsWritten)
    assert capsys.readouterr() == ("", "")
