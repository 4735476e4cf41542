"""Options several commands share: --debug (every command), where ground truth comes from (report, calibrate)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from xscan.cli.app import DEBUG
from xscan.errors import UsageError

if TYPE_CHECKING:
    from xscan.reporting.labels import GroundTruth


DEBUG_HELP = "Show the Python traceback of an unexpected error (a bug, exit 70) instead of one line."


def debug_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the --debug option every command has; `exit_codes` reads it (xscan.cli.app.DEBUG).

    The command itself takes no `debug` argument: typer sees it in the wrapper's signature.

    Args:
        command: The typer command function.

    Returns:
        The command with --debug, or the command itself when it declares its own (and passes it to exit_codes).
    """
    signature = inspect.signature(command)
    if "debug" in signature.parameters:
        return command  # declares its own --debug (and passes it to exit_codes)
    option = inspect.Parameter(
        "debug",
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(False, "--debug", help=DEBUG_HELP),
        annotation=bool,
    )

    @functools.wraps(command)
    def with_debug(*args: Any, debug: bool = False, **kwargs: Any) -> Any:
        token = DEBUG.set(debug)
        try:
            return command(*args, **kwargs)
        finally:
            DEBUG.reset(token)

    with_debug.__signature__ = signature.replace(parameters=[*signature.parameters.values(), option])  # type: ignore[attr-defined]
    with_debug.__annotations__ = {**command.__annotations__, "debug": "bool"}
    return with_debug


def labels_option() -> bool:
    """Give the shared --labels option.

    Returns:
        The typer option: ground truth from NORMAL / PNEUMONIA folder names.
    """
    return typer.Option(False, "--labels", help="Ground truth from NORMAL / PNEUMONIA folder names in each path.")


def labels_file_option() -> Path:
    """Give the shared --labels-file option.

    Returns:
        The typer option: ground truth from a CSV of path,label.
    """
    return typer.Option(
        None,
        "--labels-file",
        exists=True,
        dir_okay=False,
        help="Ground truth from a CSV with columns path,label (NORMAL/PNEUMONIA or 0/1); a path matches the "
        "path as scored (or, with --labels-root, below that folder), never a file name alone.",
    )


def labels_root_option() -> Path:
    """Give the shared --labels-root option.

    Returns:
        The typer option: the folder the --labels-file paths are relative to.
    """
    return typer.Option(
        None,
        "--labels-root",
        file_okay=False,
        help="The folder the --labels-file paths are relative to (e.g. the folder scored).",
    )


def ground_truth(labels: bool, labels_file: Path | None, labels_root: Path | None) -> GroundTruth | None:
    """Give the ground truth the three label options ask for. Call it inside `exit_codes`.

    Args:
        labels: --labels: ground truth from folder names.
        labels_file: --labels-file, or None.
        labels_root: --labels-root, or None.

    Returns:
        The ground truth, or None when none was asked for.

    Raises:
        UsageError: --labels with --labels-file, or --labels-root without --labels-file.
        LabelsError: The labels file cannot be read (a usage error to exit_codes).
    """
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
