"""Finding candidate scan files below a folder: recursion, links, which files are scans, and their order."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from xscan.input.formats import DICOM_MARKER_END, Kind, kind_by_name, looks_like_dicom


@dataclass
class WalkResult:
    """What a walk found: the candidate scans, and what it passed over and why."""

    scans: list[Path] = field(default_factory=list)
    # (path, why) passed over: links, loops, pipes.
    not_scanned: list[tuple[Path, str]] = field(default_factory=list)


def walk_order(path: Path | str) -> tuple[str, ...]:
    """Give the sort key of the walk: by path component, so `a/1.png` comes before `a.png`.

    Args:
        path: A path found by the walk.

    Returns:
        Its components.
    """
    return Path(path).parts


def is_candidate(path: Path) -> bool:
    """Tell whether a file is one to score: a known image or DICOM extension, or DICOM's first bytes in one without.

    Only files without a known extension are opened, and only their first 132 bytes read, to keep
    the walk cheap.

    Args:
        path: The file.

    Returns:
        True for a candidate scan; False too for a file that cannot be opened.
    """
    if kind_by_name(path) is not Kind.MAYBE_DICOM:
        return True
    try:
        with open(path, "rb") as stream:
            return looks_like_dicom(stream.read(DICOM_MARKER_END))
    except OSError:
        return False


def find_scans(root: Path) -> WalkResult:
    """Find every candidate file below a folder, recursively, in sorted order of path.

    Symbolic links to folders are followed once: a folder already visited (a link loop) is
    passed over and reported, as is a broken link.

    Args:
        root: The folder.

    Returns:
        The scans, in `walk_order`, and what was passed over.
    """
    result = WalkResult()
    seen: set[tuple[int, int]] = set()
    _walk(Path(root), result, seen)
    result.scans.sort(key=walk_order)
    return result


def _walk(folder: Path, result: WalkResult, seen: set[tuple[int, int]]) -> None:
    try:
        stat = folder.stat()
    except OSError as error:
        result.not_scanned.append((folder, f"unreadable folder: {error.strerror}"))
        return
    if (stat.st_dev, stat.st_ino) in seen:
        result.not_scanned.append((folder, "folder already visited (symbolic-link loop)"))
        return
    seen.add((stat.st_dev, stat.st_ino))
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        result.not_scanned.append((folder, f"unreadable folder: {error.strerror}"))
        return
    for entry in entries:
        path = folder / entry.name
        try:
            is_dir = entry.is_dir()
            is_file = entry.is_file()
        except OSError:
            is_dir = is_file = False
        if is_dir:
            _walk(path, result, seen)
        elif is_file:
            if is_candidate(path):
                result.scans.append(path)
        elif entry.is_symlink():
            result.not_scanned.append((path, _why_link_fails(path)))
        elif kind_by_name(path) in (Kind.IMAGE, Kind.DICOM):  # by name only: opening a pipe could block
            result.not_scanned.append((path, "not a regular file"))


def _why_link_fails(path: Path) -> str:
    try:
        path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic-link loop"
        return "broken symbolic link"
    return "symbolic link to something that is neither a file nor a folder"
