"""The walk over hostile folders: links, loops and non-files are reported or ignored, never followed forever."""

import os
import shutil

from support.data import real_scans

from xscan.input.walk import find_scans


def _scan(folder, name):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(real_scans("NORMAL", 1)[0], path)
    return path


def test_folder_named_like_a_scan_is_walked_not_scored(tmp_path):
    inside = _scan(tmp_path, "x.jpg/inner.jpeg")
    result = find_scans(tmp_path)
    assert result.scans == [inside] and result.not_scanned == []


def test_broken_symbolic_link_is_reported(tmp_path):
    scan = _scan(tmp_path, "a.jpeg")
    (tmp_path / "b.jpeg").symlink_to(tmp_path / "missing.jpeg")
    result = find_scans(tmp_path)
    assert result.scans == [scan]
    assert result.not_scanned == [(tmp_path / "b.jpeg", "broken symbolic link")]


def test_folder_link_loop_terminates_and_is_reported(tmp_path):
    scan = _scan(tmp_path, "sub/a.jpeg")
    (tmp_path / "sub" / "back").symlink_to(tmp_path)
    result = find_scans(tmp_path)
    assert result.scans == [scan]
    assert result.not_scanned == [(tmp_path / "sub" / "back", "folder already visited (symbolic-link loop)")]


def test_file_link_loop_is_reported(tmp_path):
    (tmp_path / "one.jpg").symlink_to(tmp_path / "two.jpg")
    (tmp_path / "two.jpg").symlink_to(tmp_path / "one.jpg")
    result = find_scans(tmp_path)
    assert result.scans == []
    assert result.not_scanned == [
        (tmp_path / "one.jpg", "symbolic-link loop"),
        (tmp_path / "two.jpg", "symbolic-link loop"),
    ]


def test_fifo_named_like_a_scan_is_reported_not_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    assert find_scans(tmp_path).not_scanned == [(tmp_path / "pipe.png", "not a regular file")]


def test_fifo_without_an_extension_is_never_opened(tmp_path):
    """Sniffing it for DICOM would block on an empty pipe, or eat what a writer put in it."""
    os.mkfifo(tmp_path / "IM0001")
    holder = os.open(tmp_path / "IM0001", os.O_RDWR | os.O_NONBLOCK)  # a writer: opening it would not block
    try:
        os.write(holder, b"x" * 200)
        result = find_scans(tmp_path)
        assert result.scans == [] and result.not_scanned == []
        assert os.read(holder, 1000) == b"x" * 200  # nobody read from it
    finally:
        os.close(holder)


def test_other_extensions_are_ignored_silently(tmp_path):
    scan = _scan(tmp_path, "a.png")
    for name in ("report.pdf", "notes.txt", "scan.jpg.bak", "README"):
        (tmp_path / name).write_text("not a scan")
    result = find_scans(tmp_path)
    assert result.scans == [scan] and result.not_scanned == []
