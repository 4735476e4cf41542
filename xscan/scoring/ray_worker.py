"""What runs on a Ray cluster's workers for `xscan score --ray`: loading files and scoring them, in and out as columns.

The driver (`ray_driver`) ships the model once (`ModelBundle`) and the planned paths once; Ray Data
runs `load_block` as CPU tasks (the same `load_scan` as a local run: a bad file is an error row)
and `ScoringActor` in an actor pool (the same `Scorer` and `score_batch`; the LiteRT file loaded
with LiteRT alone, never TensorFlow). What travels between them and back to the driver is columns
of plain values (numbers, text, a tensor of model inputs; a file's tags, film statistics and
warnings as JSON text), never pickled Python objects: a column is moved as one Arrow buffer.
"""

from __future__ import annotations

import json
import os
import tempfile
import typing
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xscan.errors import RunError, WeightsError
from xscan.input.file_warnings import FileWarning, warnings_kept
from xscan.model.card import CARD_FILE, ModelCard, read_card
from xscan.model.scorer import Scorer, load_scorer, model_files
from xscan.scoring.options import DicomOptions, ScoreOptions
from xscan.scoring.pipeline import LoadedScan, load_scan, score_batch
from xscan.scoring.results import Row

if TYPE_CHECKING:
    from xscan.model.site_calibration import LoadedSite

POSITION = "position"  # a file's index in the planned paths: the driver checks that they come back 0, 1, 2, ...
WARNINGS = "warnings"  # the warnings raised while the file was read, as JSON: [[category, origin, message], ...]
ROW_PREFIX = "row."  # a Row's field as a column: row.probability, row.error, ...


class ClusterError(RunError):
    """The Ray cluster cannot be used: not reachable, failed to start, or has another xscan (exit 3)."""


@dataclass(frozen=True)
class ModelBundle:
    """The model as it travels to the scoring actors: the files a Scorer loads, the site calibration, who sent them."""

    # By path below the weights folder: the card, the LiteRT file, the feature statistics if used.
    files: dict[str, bytes]
    scope_check: bool
    site: LoadedSite | None
    xscan_version: str

    @classmethod
    def read(cls, weights_dir: Path, scope_check: bool, site: LoadedSite | None) -> tuple[ModelCard, ModelBundle]:
        """Read a weights folder's card and bundle its files, each checked against the card as `load_scorer` does.

        Args:
            weights_dir: the weights folder.
            scope_check: whether the actors run the out-of-scope check (its files are shipped then).
            site: the site calibration, already checked against the card.

        Returns:
            The card and the bundle.

        Raises:
            WeightsError: a file cannot be read or does not match the card.
        """
        card = read_card(weights_dir)
        files = {}
        for path in [weights_dir / CARD_FILE, *model_files(weights_dir, card, scope_check=scope_check)]:
            try:
                files[path.relative_to(weights_dir).as_posix()] = path.read_bytes()
            except OSError as error:
                raise WeightsError(f"cannot read {path}: {error.strerror or error}") from None
        return card, cls(files, scope_check, site, installed_version())

    def load(self) -> Scorer:
        """Load the Scorer of these files (one model thread) through a temporary weights folder.

        Returns:
            The Scorer.

        Raises:
            ClusterError: this worker's xscan is not the driver's.
        """
        here = installed_version()
        if self.xscan_version != here:
            raise ClusterError(
                f"this worker has xscan {here}, the driver {self.xscan_version}: install one version everywhere"
            )
        with tempfile.TemporaryDirectory(prefix="xscan-weights-") as folder:
            for name, content in self.files.items():
                (Path(folder) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(folder) / name).write_bytes(content)
            return load_scorer(Path(folder), threads=1, scope_check=self.scope_check, site=self.site)


def installed_version() -> str:
    """Tell the version of xscan installed here, as pip knows it.

    Importing xscan.__version__ would close an import cycle.

    Returns:
        The version, or "not installed".
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xscan")
    except PackageNotFoundError:
        return "not installed"


# ---- a decoding task: positions in, loaded files out --------------------------------------------


def load_block(block: dict[str, np.ndarray], names: Any, image_size: int, dicom: DicomOptions) -> dict[str, np.ndarray]:
    """Load the files at a block of positions (`load_scan`), as columns.

    Warnings raised while a file is read are kept with it (`file_warnings`), as in a local run,
    and travel on with it.

    Args:
        block: Ray Data's block of `range`: the positions, in its "id" column.
        names: an ObjectRef of the planned paths, as an Arrow binary array (a file name need not be UTF-8).
        image_size: the model input's side.
        dicom: the run's DICOM options.

    Returns:
        Columns: the positions, the model inputs (zeros where none) and whether each is one, and each
        file's error, tags, film statistics and warnings.
    """
    import ray

    names = ray.get(names)  # an Arrow array in the node's object store: read in place, not copied
    with warnings_kept():
        loaded = [load_scan(Path(os.fsdecode(names[position].as_py())), image_size, dicom) for position in block["id"]]
    model_inputs = np.zeros((len(loaded), image_size, image_size, 1), np.float32)
    for index, scan in enumerate(loaded):
        if scan.model_input is not None:
            model_inputs[index] = scan.model_input
    return {
        POSITION: block["id"],
        "model_input": model_inputs,  # a tensor column, moved as one array
        "scorable": np.array([scan.model_input is not None for scan in loaded], dtype=bool),
        "error": _text([scan.error for scan in loaded]),
        "tags": _text([json.dumps(scan.tags) for scan in loaded]),
        "film": _text([json.dumps(scan.film) for scan in loaded]),
        WARNINGS: _text([json.dumps([_warning_cells(warning) for warning in scan.warnings]) for scan in loaded]),
    }


def _warning_cells(warning: FileWarning) -> list[str]:
    return [warning.category, warning.origin, warning.message]  # its path is the driver's to say


def warnings_of(cell: str, path: Path) -> list[FileWarning]:
    """Read the warnings of one file from its WARNINGS cell, each marked with its path.

    Args:
        cell: the JSON text `load_block` wrote.
        path: the file they were raised for.

    Returns:
        The warnings, in the order they were raised.
    """
    return [FileWarning(category, origin, message, path) for category, origin, message in json.loads(cell)]


def _loaded_scans(batch: dict[str, np.ndarray]) -> list[LoadedScan]:
    """The LoadedScans of a batch of `load_block`'s columns (without paths or warnings: the driver has those)."""
    return [
        LoadedScan(Path(), model_input if scorable else None, str(error), json.loads(tags), film=json.loads(film))
        for model_input, scorable, error, tags, film in zip(
            batch["model_input"], batch["scorable"], batch["error"], batch["tags"], batch["film"], strict=True
        )
    ]


# ---- a scoring actor: loaded files in, rows out ---------------------------------------------------


class ScoringActor:
    """One Scorer per actor, loaded once from the bundle in the object store; a batch becomes rows by `score_batch`."""

    def __init__(self, bundle: Any, options: ScoreOptions) -> None:
        """Load the Scorer from the object store, once per actor.

        Args:
            bundle: An ObjectRef of the ModelBundle.
            options: The run's options; their threshold, else the model's, labels the rows.
        """
        import ray

        self._scorer = ray.get(bundle).load()
        self._threshold = options.threshold_or(self._scorer.threshold)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Score one batch of `load_block`'s columns.

        Args:
            batch: the columns of a batch of loaded files.

        Returns:
            The positions, each row's fields as columns (`rows_as_columns`) and the files' warnings.
        """
        rows = score_batch(_loaded_scans(batch), self._scorer, self._threshold)
        return {POSITION: batch[POSITION], **rows_as_columns(rows), WARNINGS: batch[WARNINGS]}


# ---- a Row as columns and back ---------------------------------------------------------------------


def _text(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=np.str_)


@cache  # the type hints are evaluated once per process, not twice a batch
def _row_fields() -> list[tuple[str, str]]:
    """Each field of Row but its path (the driver's), and how it travels: text, (optional) number, integer, record."""
    hints = typing.get_type_hints(Row)
    kinds = []
    for field in fields(Row):
        hint = hints[field.name]
        if field.name == "path":
            continue
        if hint is str:
            kinds.append((field.name, "text"))
        elif hint is float:
            kinds.append((field.name, "number"))
        elif hint is int:
            kinds.append((field.name, "integer"))
        elif hint == float | None:
            kinds.append((field.name, "optional number"))  # None travels as NaN: a probability is never NaN
        elif typing.get_origin(hint) is dict:
            kinds.append((field.name, "record"))  # JSON text: exact for text and for floats
        else:
            raise TypeError(f"Row.{field.name} ({hint}) has no column encoding in xscan.scoring.ray_worker")
    return kinds


def rows_as_columns(rows: list[Row]) -> dict[str, np.ndarray]:
    """Lay out rows as one column per field of Row (`row.<field>`), their paths left out.

    Args:
        rows: the rows of one batch.

    Returns:
        The columns, by name.
    """
    columns = {}
    for name, kind in _row_fields():
        values = [getattr(row, name) for row in rows]
        if kind == "text":
            columns[ROW_PREFIX + name] = _text(values)
        elif kind == "record":
            columns[ROW_PREFIX + name] = _text([json.dumps(value) for value in values])
        elif kind == "integer":
            columns[ROW_PREFIX + name] = np.array(values, dtype=np.int64)
        else:
            columns[ROW_PREFIX + name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return columns


def rows_from_columns(columns: dict[str, np.ndarray], paths: list[str]) -> list[Row]:
    """Make the rows again that `rows_as_columns` laid out, with their paths.

    Args:
        columns: a batch's columns, as Ray Data gives them back (numpy).
        paths: each row's path, in order.

    Returns:
        The rows.
    """
    cells: dict[str, list[Any]] = {}
    for name, kind in _row_fields():
        values = columns[ROW_PREFIX + name].tolist()
        if kind == "text":
            cells[name] = [str(value) for value in values]
        elif kind == "record":
            cells[name] = [json.loads(value) for value in values]
        elif kind == "integer":
            cells[name] = [int(value) for value in values]
        elif kind == "optional number":
            cells[name] = [None if np.isnan(value) else float(value) for value in values]
        else:
            cells[name] = [float(value) for value in values]
    return [
        Row(path=path, **{name: values[index] for name, values in cells.items()}) for index, path in enumerate(paths)
    ]
