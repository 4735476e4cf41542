"""The results CSV: its columns, one row per scanned file, streaming writer and reader."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

COLUMNS = ("path", "probability", "label", "threshold", "model", "error")
POSITIVE, NEGATIVE = "PNEUMONIA", "NORMAL"


@dataclass(frozen=True)
class Row:
    path: str
    probability: float | None  # of pneumonia; None when the file could not be scored
    threshold: float
    model: str
    error: str = ""
    extra: tuple[str, ...] = ()  # values of opt-in extra columns (DICOM tags), after the standard ones

    @property
    def label(self) -> str:
        if self.probability is None:
            return ""
        return POSITIVE if self.probability >= self.threshold else NEGATIVE

    def as_csv(self) -> list[str]:
        probability = "" if self.probability is None else f"{self.probability:.6f}"
        return [self.path, probability, self.label, f"{self.threshold:.6f}", self.model, self.error, *self.extra]


class ResultsWriter:
    """Writes the header, then rows as they come, flushed after each batch. `-` is stdout.

    EXTRA_COLUMNS (opt-in, such as DICOM tags) follow the standard COLUMNS; rows carry their values in `Row.extra`.
    """

    def __init__(self, destination: Path | str, extra_columns: Sequence[str] = ()) -> None:
        self._owned = str(destination) != "-"
        self._stream: IO[str] = (
            open(destination, "w", newline="", encoding="utf-8", errors="surrogateescape")
            if self._owned
            else sys.stdout
        )
        self._csv = csv.writer(self._stream)
        self._csv.writerow((*COLUMNS, *extra_columns))

    def write(self, rows: list[Row]) -> None:
        self._csv.writerows(row.as_csv() for row in rows)
        self._stream.flush()

    def close(self) -> None:
        if self._owned:
            self._stream.close()
        else:
            self._stream.flush()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NotResultsError(ValueError):
    """A CSV that is not an xscan results file."""


def read_rows(source: Path) -> Iterator[Row]:
    """The rows of an xscan results CSV, checking its header first."""
    with open(source, newline="", encoding="utf-8", errors="surrogateescape") as stream:
        reader = csv.DictReader(stream)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise NotResultsError(f"{source} is not an xscan results file: missing column(s) {', '.join(missing)}")
        for record in reader:
            yield Row(
                path=record["path"],
                probability=float(record["probability"]) if record["probability"] else None,
                threshold=float(record["threshold"]),
                model=record["model"],
                error=record["error"],
            )
