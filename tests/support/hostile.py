"""A folder of what an export holds besides good scans.

Awkward names, broken and foreign files, links that are not files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2

from support.data import real_scans

AWKWARD_NAMES = ["with, comma.jpeg", 'with "quotes".jpeg', "new\nline.jpeg", "  spaces  .jpeg", "Ünïcødé 肺.jpeg"]
NOT_UTF8 = b"latin1-\xe9.jpeg"
EXPECTED_ERRORS = {
    "zero.png": "empty file (0 bytes)",
    "cut.jpeg": "truncated JPEG: no end-of-image marker",
    "page.jpg": "not a JPEG image: the file holds HTML",
    "tiny.png": "image too small to be a radiograph (32x32 pixels)",
}


def build_hostile_folder(root: Path) -> None:
    """Good scans under awkward names, each hostile file of EXPECTED_ERRORS, and things that are not files to score."""
    good = real_scans("NORMAL", len(AWKWARD_NAMES) + 1)
    for source, name in zip(good, AWKWARD_NAMES, strict=False):
        shutil.copy(source, root / name)
    shutil.copy(good[-1], os.path.join(os.fsencode(root), NOT_UTF8))
    jpeg = real_scans("PNEUMONIA", 1)[0].read_bytes()
    (root / "zero.png").write_bytes(b"")
    (root / "cut.jpeg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "page.jpg").write_text("<html><body>session expired</body></html>\n")
    cv2.imwrite(str(root / "tiny.png"), cv2.resize(cv2.imread(str(good[0]), cv2.IMREAD_GRAYSCALE), (32, 32)))
    (root / "folder.jpg").mkdir()
    (root / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    (root / "loop").symlink_to(root)
    (root / "notes.txt").write_text("not a scan")
    shutil.copy(good[0], root / "scan.jpeg.bak")
