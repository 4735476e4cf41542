"""Finding candidate scan files below a folder: recursion, extensions, DICOM sniffing, links, sorted order."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
DICOM_MARKER_END = 132  # a DICOM Part 10 file has a 128-byte preamble, then b"DICM"


@dataclass
class WalkResult:
    scans: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, why) not taken


def is_candidate(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS or is_dicom(path)


def is_dicom(path: Path) -> bool:
    """A DICOM file: by extension, or any file without a known extension that has the DICM marker.

    PACS exports often name files by UID or not at all, so those are sniffed; only they are
    opened, and only their first 132 bytes read, to keep the walk cheap. A DICOMDIR is an index
    of the export, not a scan.
    """
    suffix = path.suffix.lower()
    if suffix in DICOM_EXTENSIONS:
        return True
    if suffix in IMAGE_EXTENSIONS or path.name.upper() == "DICOMDIR":
        return False
    try:
        with open(path, "rb") as stream:
            head = stream.read(DICOM_MARKER_END)
    except OSError:
        return False
    return head[DICOM_MARKER_END - 4 :] == b"DICM"


def find_scans(root: Path) -> WalkResult:
    """Every candidate file below ROOT, recursively, in sorted order of path.

    Symbolic links to folders are followed once: a folder already visited (a link loop) is
    skipped and reported, as is a broken link.
    """
    result = WalkResult()
    seen: set[tuple[int, int]] = set()
    _walk(Path(root), result, seen)
    result.scans.sort(key=lambda p: p.parts)
    return result


def _walk(folder: Path, result: WalkResult, seen: set[tuple[int, int]]) -> None:
    try:
        stat = folder.stat()
    except OSError as error:
        result.skipped.append((folder, f"unreadable folder: {error.strerror}"))
        return
    if (stat.st_dev, stat.st_ino) in seen:
        result.skipped.append((folder, "folder already visited (symbolic-link loop)"))
        return
    seen.add((stat.st_dev, stat.st_ino))
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        result.skipped.append((folder, f"unreadable folder: {error.strerror}"))
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
            result.skipped.append((path, _why_link_fails(path)))
        elif is_candidate(path):
            result.skipped.append((path, "not a regular file"))


def _why_link_fails(path: Path) -> str:
    try:
        path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic-link loop"
        return "broken symbolic link"
    return "symbolic link to something that is neither a file nor a folder"
