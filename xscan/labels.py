"""Ground truth for scored rows: from NORMAL / PNEUMONIA folder names in each path, or from a labels CSV."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Protocol

from xscan.classes import NEGATIVE, POSITIVE
from xscan.results import COLUMNS

LABEL_VALUES = {NEGATIVE.lower(): 0, "0": 0, POSITIVE.lower(): 1, "1": 1}  # 1 is pneumonia, as in xscan.metrics
LABELS_COLUMNS = ("path", "label")


class LabelsError(ValueError):
    """A labels file that cannot be read as `path,label` with known labels; the message says where."""


class GroundTruth(Protocol):
    description: str  # where the labels come from, for messages

    def __call__(self, path: str) -> int | None:
        """1 for pneumonia, 0 for normal, None when PATH has no ground truth."""
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
        for folder in reversed(_parts(path)[:-1]):
            if folder.upper() in (NEGATIVE, POSITIVE):
                return LABEL_VALUES[folder.lower()]
        return None


def parse_label(text: str) -> int:
    """0 or 1 from NORMAL / PNEUMONIA / 0 / 1, any case, surrounding spaces ignored."""
    try:
        return LABEL_VALUES[text.strip().lower()]
    except KeyError:
        raise LabelsError(f"label {text!r} is not one of {NEGATIVE}, {POSITIVE}, 0 or 1") from None


class FileLabels:
    """Ground truth from a CSV with columns `path,label`, matched by full path, else by file name alone.

    A file name listed twice with different labels is ambiguous and is matched by full path only.
    """

    def __init__(self, by_path: dict[str, int], source: str) -> None:
        self.by_path = by_path
        self.description = f"labels file {source} ({len(by_path)} entries, matched by full path or file name)"
        labels_of_name: dict[str, set[int]] = {}
        for path, label in by_path.items():
            labels_of_name.setdefault(_parts(path)[-1], set()).add(label)
        self.by_name = {name: labels.pop() for name, labels in labels_of_name.items() if len(labels) == 1}

    @classmethod
    def read(cls, source: Path) -> FileLabels:
        # utf-8-sig: spreadsheets often save CSV with a byte-order mark.
        with open(source, newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            missing = [c for c in LABELS_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise LabelsError(f"{source} is not a labels file: missing column(s) {', '.join(missing)} (expected path,label)")
            if set(COLUMNS) <= set(reader.fieldnames or []):
                raise LabelsError(f"{source} is an xscan results file: its label column is the model's prediction, not ground truth")
            by_path: dict[str, int] = {}
            for record in reader:
                by_path[record["path"]] = _checked_label(record, by_path, source, reader.line_num)
        if not by_path:
            raise LabelsError(f"{source} has a header but no labels")
        return cls(by_path, str(source))

    def __call__(self, path: str) -> int | None:
        if path in self.by_path:
            return self.by_path[path]
        return self.by_name.get(_parts(path)[-1]) if path else None


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
