"""The one capture of descriptor 2, as decoders, notes and overlapping users meet it.

A decoder's native message is its file's warning, notes are dropped, the rest passes on,
overlapping users share one pipe, and the process is left as it was found.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from xscan.input.file_warnings import collected, hand_over, warnings_kept
from xscan.input.native_messages import CATEGORY, native_messages_kept
from xscan.input.native_stderr import capturing, native_stderr_discarded, native_stderr_without
from xscan.scoring.pipeline import LoadedScan, load_scan

LIBJPEG_SAYS = "Corrupt JPEG data: "  # then how many bytes it skipped before which marker


def _films(folder: Path, count: int) -> list[Path]:
    """COUNT small JPEGs, every other one with bytes slipped in before its end marker (libjpeg complains, decodes)."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    paths = []
    for index in range(count):
        encoded = cv2.imencode(".jpg", (rng.random((400, 400)) * 255).astype(np.uint8))[1].tobytes()
        if index % 2:  # (libjpeg does not notice every such slip: some of these files decode without a word)
            encoded = encoded[:-2] + b"\x12\x34\x56" + encoded[-2:]
        paths.append(folder / f"{index}.jpg")
        paths[-1].write_bytes(encoded)
    return paths


def _load(path: Path) -> LoadedScan:
    scan = load_scan(path, 160)
    hand_over(scan.warnings)
    return scan


def _descriptor_2() -> tuple[int, int]:
    status = os.fstat(2)
    return status.st_dev, status.st_ino


def _messages(scans: list[LoadedScan]) -> list[list[tuple[str, str]]]:
    return [[(warning.category, warning.message) for warning in scan.warnings] for scan in scans]


def test_each_decoders_message_is_its_own_files_warning_and_nothing_is_printed(capfd, tmp_path):
    paths = _films(tmp_path / "films", 12)
    found, stderr = _descriptor_2(), sys.stderr
    with warnings_kept(), native_messages_kept(), collected() as raised:
        assert capturing() and _descriptor_2() != found
        alone = [load_scan(path, 160) for path in paths]
        with ThreadPoolExecutor(4) as pool:  # decodes in flight together: a shared line is told apart by decoding again
            together = list(pool.map(lambda path: load_scan(path, 160), paths))
    assert not raised  # each warning travels with its scan, as a run hands them over
    assert all(scan.model_input is not None for scan in together)
    assert _messages(together) == _messages(alone)
    said = [message for messages in _messages(alone) for _, message in messages]
    assert len(said) >= 4 and all(message.startswith(LIBJPEG_SAYS) for message in said)
    assert {category for messages in _messages(alone) for category, _ in messages} == {CATEGORY}
    assert all(not scan.warnings for scan in alone[::2])  # the intact files
    assert capfd.readouterr().err == ""
    assert not capturing() and _descriptor_2() == found and sys.stderr is stderr  # the process as it was found


def test_overlapping_users_share_one_capture_and_pass_on_what_none_takes(capfd, tmp_path):
    path = _films(tmp_path / "films", 2)[1]  # one it notices
    with native_messages_kept(), collected() as raised:
        pipe = _descriptor_2()
        with native_stderr_without(["a note"]):
            assert _descriptor_2() == pipe  # no second redirection
            os.write(2, b"a note\nan error of its own\n")
            _load(path)  # a decode meanwhile still keeps its message
        os.write(2, b"written while nothing decodes\n")
        with native_stderr_discarded():
            os.write(2, b"discarded\n")
        print("Python's own", file=sys.stderr)
    assert [warning.message[: len(LIBJPEG_SAYS)] for warning in raised] == [LIBJPEG_SAYS]
    assert capfd.readouterr().err == "an error of its own\nwritten while nothing decodes\nPython's own\n"
    assert not capturing()


def test_without_a_run_a_decoders_message_is_printed_as_before(capfd, tmp_path):
    path = _films(tmp_path / "films", 2)[1]  # one it notices
    assert load_scan(path, 160).warnings == ()
    assert LIBJPEG_SAYS in capfd.readouterr().err
