"""Ground truth for scored rows: from NORMAL / PNEUMONIA folder names in each path, or from a labels CSV."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Protocol

from xscan.errors import LabelsError
from xscan.model.classes import LABEL_VALUES, NEGATIVE, POSITIVE, parse_label
from xscan.scoring.results import COLUMNS, unescape_cell

LABELS_COLUMNS = ("path", "label")


class GroundTruth(Protocol):
    """Where the ground truth comes from: a call from a results path to its label."""

    description: str  # where the labels come from, for messages

    def __call__(self, path: str) -> int | None:
        """Give a path's ground truth.

        Args:
            path: The path as the results hold it.

        Returns:
            1 for pneumonia, 0 for normal, None when the path has no ground truth.
        """
        ...


def _parts(path: str) -> list[str]:
    # Results may come from another system, so both separators count.
    return [part for part in re.split(r"[\\/]", path) if part]


class FolderLabels:
    """Ground truth from a folder named NORMAL or PNEUMONIA (any case) anywhere above the file.

    Only whole folder names count: `abnormal/` or `NORMAL2-IM-1.jpeg` say nothing. When both
    names appear, the folder nearest the file wins, as it is the most specific.
    """

    description = "NORMAL / PNEUMONIA folder names"

    def __call__(self, path: str) -> int | None:
        """Give a path's ground truth from its nearest NORMAL or PNEUMONIA folder.

        Args:
            path: The path as the results hold it (either separator).

        Returns:
            1 for pneumonia, 0 for normal, None when no folder says.
        """
        for folder in reversed(_parts(path)[:-1]):
            if folder.upper() in (NEGATIVE, POSITIVE):
                return LABEL_VALUES[folder.lower()]
        return None


class FileLabels:
    """Ground truth from a CSV with columns `path,label`, matched on the whole path, never on a file name alone.

    Exports reuse file names (IM0001.dcm in every study's folder), so two files of one name must
    never share a label. A labels path matches a results path when both name the same file:
    relative to the root when one is given (`--labels-root`), else as written in the results
    (relative paths are taken from the current folder, and `a/./b` is `a/b`). A path written
    spreadsheet-safe (`'=x.jpg`) is read as the results are.
    """

    def __init__(self, by_path: dict[str, int], source: str, root: Path | None = None) -> None:
        """Hold labels by path.

        Args:
            by_path: The label of each path, as the labels file writes it.
            source: Where the labels come from, for messages.
            root: The folder the labels paths are relative to, if given.
        """
        self.by_path = by_path
        self.root = root
        self._by_place = {place(path, root): label for path, label in by_path.items()}
        below = f" below {root}" if root is not None else ""
        self.description = f"labels file {source} ({len(by_path)} entries, matched by path{below})"

    @classmethod
    def read(cls, source: Path, root: Path | None = None) -> FileLabels:
        """Read a labels CSV.

        Args:
            source: The CSV, with columns path,label.
            root: The folder its paths are relative to (`--labels-root`), if given.

        Returns:
            The labels.

        Raises:
            LabelsError: A column is missing, the file is an xscan results file, a path is empty, a
                label is not one, a path is listed with both labels, or there are no labels.
        """
        # utf-8-sig: spreadsheets often save CSV with a byte-order mark.
        with open(source, newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            missing = [c for c in LABELS_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise LabelsError(
                    f"{source} is not a labels file: missing column(s) {', '.join(missing)} (expected path,label)"
                )
            if set(COLUMNS) <= set(reader.fieldnames or []):
                raise LabelsError(
                    f"{source} is an xscan results file: its label column is the model's prediction, not ground truth"
                )
            by_path: dict[str, int] = {}
            for record in reader:
                record["path"] = unescape_cell(record["path"] or "")
                by_path[record["path"]] = _checked_label(record, by_path, source, reader.line_num)
        if not by_path:
            raise LabelsError(f"{source} has a header but no labels")
        return cls(by_path, str(source), root)

    def __call__(self, path: str) -> int | None:
        """Give a path's ground truth.

        Args:
            path: The path as the results hold it.

        Returns:
            1 for pneumonia, 0 for normal, None when the labels file does not list it.
        """
        return self._by_place.get(place(path)) if path else None


def place(path: str, root: Path | None = None) -> str:
    """Say where a path names a file: absolute and normalised, with no file system access.

    Args:
        path: The path.
        root: The folder it is relative to, if given; else the current folder.

    Returns:
        The absolute, normalised path.
    """
    return os.path.normpath(os.path.abspath(os.path.join(root, path) if root is not None else path))


def _checked_label(record: dict[str, str], seen: dict[str, int], source: Path, line: int) -> int:
    if not record["path"]:
        raise LabelsError(f"{source} line {line}: the path is empty")
    try:
        label = parse_label(record["label"] or "")
    except LabelsError as error:
        raise LabelsError(f"{source} line {line}: {error}") from None
    if seen.get(record["path"], label) != label:
        raise LabelsError(f"{source} line {line}: {record['path']} is listed with both labels")
    return label
