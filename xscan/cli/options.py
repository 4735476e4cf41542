"""Options several commands share: --debug (every command), where ground truth comes from (report, calibrate)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from xscan.errors import UsageError

if TYPE_CHECKING:
    from xscan.reporting.labels import GroundTruth


def debug_option() -> bool:
    """--debug, on every command: an unexpected error (a bug) shows its Python traceback instead of one line."""
    return typer.Option(False, "--debug", help="Show the Python traceback of an unexpected error (a bug: exit 70).")


def labels_option() -> bool:
    return typer.Option(False, "--labels", help="Ground truth from NORMAL / PNEUMONIA folder names in each path.")


def labels_file_option() -> Path:
    return typer.Option(
        None,
        "--labels-file",
        exists=True,
        dir_okay=False,
        help="Ground truth from a CSV with columns path,label (NORMAL/PNEUMONIA or 0/1); a path matches the "
        "path as scored (or, with --labels-root, below that folder), never a file name alone.",
    )


def labels_root_option() -> Path:
    return typer.Option(
        None,
        "--labels-root",
        file_okay=False,
        help="The folder the --labels-file paths are relative to (e.g. the folder scored).",
    )


def ground_truth(labels: bool, labels_file: Path | None, labels_root: Path | None) -> GroundTruth | None:
    """The ground truth the three label options ask for; None when none was asked for. Call it inside `exit_codes`."""
    from xscan.reporting.labels import FileLabels, FolderLabels

    if labels and labels_file:
        raise UsageError("use --labels or --labels-file, not both")
    if labels_root and not labels_file:
        raise UsageError(
            "--labels-root says where the paths of a --labels-file are relative to: give --labels-file too"
        )
    if labels_file:
        return FileLabels.read(labels_file, labels_root)  # a LabelsError is a usage error (exit_codes)
    return FolderLabels() if labels else None
