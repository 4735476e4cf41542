"""One verdict per study: the rows of a results CSV grouped by DICOM study (else patient, else file) and rolled up.

A study is the files' StudyInstanceUID, read again from their headers (the results CSV holds no
identifiers); a file without one belongs to its patient, as `xscan train` finds it (a file-name
pattern or a patients file's `patient` column), else it is a study of its own. The verdict is
the largest probability among the in-scope images, so that a second view never hides a finding
(CheXpert rolls views up the same way): PNEUMONIA if any in-scope image is at or above the
threshold, NORMAL if all are below it, OUT_OF_SCOPE if none is in scope, and no label, with an
error, if no file could be scored.

The studies CSV starts with the results CSV's six columns, `path` holding the study key, so that
`xscan report` reads it as it reads per-file results (per-study metrics: see README.md).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from xscan.errors import ResultsFileError, UsageError
from xscan.model.classes import NEGATIVE, OUT_OF_SCOPE, POSITIVE
from xscan.pacs.headers import read_header
from xscan.reporting.labels import place
from xscan.scoring.results import (
    COLUMNS,
    KEY_COLUMN,
    SCOPE_COLUMN,
    SKIPPED_PREFIX,
    NotResultsError,
    ResultsWriter,
    Row,
    read_rows,
    read_table,
    replace_file,
)
from xscan.training.dataset import PER_FILE, patient_id

# What the study key (the `path` column) is.
BY_STUDY, BY_PATIENT, BY_FILE = "StudyInstanceUID", "patient", "file"
GROUPED_BY = "grouped_by"
DECIDED_BY = "decided_by"  # the file whose row gave the study its probability (or its error)
COUNT_COLUMNS = ("files", "scored", "out_of_scope", "skipped", "errors")
STUDY_COLUMNS = COLUMNS + (GROUPED_BY, "AccessionNumber", *COUNT_COLUMNS, DECIDED_BY, SCOPE_COLUMN)


@dataclass(frozen=True)
class StudyFile:
    """One row of the results, and its DICOM header (no pixels) when it is a DICOM that can be read now."""

    row: Row
    header: Dataset | None


@dataclass(frozen=True)
class Study:
    """One study's files, grouped by StudyInstanceUID, else by patient, else one file alone."""

    key: str  # the StudyInstanceUID, the patient (below the folder holding their files), or the file's path
    grouped_by: str  # BY_STUDY, BY_PATIENT or BY_FILE
    files: tuple[StudyFile, ...]

    @property
    def accession_number(self) -> str:
        """Give the first AccessionNumber among the study's headers, or ""."""
        return next((str(f.header.get("AccessionNumber", "")).strip() for f in self.files if f.header is not None), "")

    def verdict(self) -> Row:
        """The study as one row: the largest in-scope probability, else the largest out-of-scope one, else an error."""
        rows = [f.row for f in self.files]
        scored = [row for row in rows if row.probability is not None]
        in_scope = [row for row in scored if not row.scope]
        deciding = max(in_scope or scored, key=lambda row: row.probability or 0.0) if scored else rows[0]
        error = "" if scored else _why_none_scored(rows)
        counts = self.counts()
        columns = {
            GROUPED_BY: self.grouped_by,
            "AccessionNumber": self.accession_number,
            **{name: str(counts[name]) for name in COUNT_COLUMNS},
            DECIDED_BY: deciding.path,
        }
        return Row(
            self.key,
            deciding.probability,
            deciding.threshold,
            deciding.model,
            error,
            columns,
            "" if in_scope else deciding.scope,
        )

    def counts(self) -> dict[str, int]:
        """Count the study's files: all, scored, out of scope, skipped by the DICOM policy, failed."""
        rows = [f.row for f in self.files]
        return {
            "files": len(rows),
            "scored": sum(row.probability is not None for row in rows),
            "out_of_scope": sum(bool(row.scope) for row in rows),
            "skipped": sum(row.skipped_by_policy for row in rows),
            "errors": sum(bool(row.error) and not row.skipped_by_policy for row in rows),
        }


def _why_none_scored(rows: list[Row]) -> str:
    if all(row.skipped_by_policy for row in rows):
        return f"{SKIPPED_PREFIX}no file scored ({rows[0].error.removeprefix(SKIPPED_PREFIX)})"
    first = next(row for row in rows if row.error and not row.skipped_by_policy)
    return f"no file could be scored ({len(rows)} files; first: {first.error})"


class SourceChangedError(UsageError):
    """A file scored in the results is gone or unreadable now: a report or image of it would not be true (exit 2)."""


def check_sources(studies: Iterable[Study]) -> None:
    """Refuse studies a scored file of which is gone since it was scored.

    A report is never rebuilt silently from the files that remain: the results say more was scored.

    Args:
        studies: The studies.

    Raises:
        SourceChangedError: Names the first scored file that is gone.
    """
    for study in studies:
        for member in study.files:
            if member.row.probability is not None and not file_of(member.row).exists():
                raise SourceChangedError(
                    f"{file_of(member.row)} was scored but is gone (moved or deleted since): score the folder "
                    "again, or give results that match the files"
                )


VERDICT_WORDS = {POSITIVE: "pneumonia", NEGATIVE: "normal", OUT_OF_SCOPE: "out of scope"}


def verdict_words(label: str) -> str:
    """A label as a person reads it in a report or on an image: "out of scope", never OUT_OF_SCOPE."""
    return VERDICT_WORDS.get(label, label.lower().replace("_", " "))


def file_of(row: Row) -> Path:
    """Where the scored file is now: its resolved path when the results have one (xscan score's do), else its path."""
    return Path(row.trailing_columns.get(KEY_COLUMN) or row.path)


def group_studies(rows: Iterable[Row], patients: Mapping[str, str] | None = None) -> list[Study]:
    """Group rows into studies, in the order of each study's first file (the results' walk order).

    Args:
        rows: The results' rows.
        patients: A file's place (`place`) to its patient, from a patients file; it wins over file names.

    Returns:
        The studies.
    """
    groups: dict[tuple[str, str], list[StudyFile]] = {}
    for row in rows:
        header = read_header(file_of(row))
        groups.setdefault(_group_of(row, header, patients or {}), []).append(StudyFile(row, header))
    return [Study(_study_key(kind, name, files), kind, tuple(files)) for (kind, name), files in groups.items()]


def _group_of(row: Row, header: Dataset | None, patients: Mapping[str, str]) -> tuple[str, str]:
    study_uid = str(header.get("StudyInstanceUID", "")).strip() if header is not None else ""
    if study_uid:
        return BY_STUDY, study_uid
    patient = patients.get(place(row.path)) or patient_id(Path(row.path))
    if patient.startswith(PER_FILE):
        return BY_FILE, row.path
    return BY_PATIENT, patient


def _study_key(kind: str, name: str, files: list[StudyFile]) -> str:
    if kind != BY_PATIENT:
        return name
    # Below the folder that holds the patient's files: the key then carries NORMAL / PNEUMONIA folder names for
    # `xscan report --labels`, and two exports' patients of one number stay apart.
    folder = os.path.commonpath([os.path.dirname(f.row.path) or "." for f in files])
    return os.path.join(folder, name)


def read_patients(source: Path, root: Path | None = None) -> dict[str, str]:
    """Read the patient of each file listed in a patients file.

    Args:
        source: A CSV with columns path,patient (a `train` labels file is one).
        root: The folder its paths are relative to; None: the current folder, as the results' paths are.

    Returns:
        Each file's place (`place`) to its patient.

    Raises:
        UsageError: The file cannot be read or is not a patients file.
    """
    try:
        with open(source, newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            if not {"path", "patient"} <= set(reader.fieldnames or []):
                raise UsageError(f"{source} is not a patients file: it needs columns path,patient")
            return {
                place(record["path"], root): f"column:{record['patient'].strip()}"
                for record in reader
                if (record["patient"] or "").strip()
            }
    except OSError as error:
        raise UsageError(f"cannot read patients file {source}: {error.strerror or error}") from None


@dataclass(frozen=True)
class StudiesSummary:
    """What `write_studies` wrote: the output, the studies and the row of each."""

    output: str
    studies: list[Study]
    verdicts: list[Row]

    def by_label(self) -> dict[str, int]:
        """How many studies got each label; a study no file of which could be scored counts under "not scored"."""
        counts: dict[str, int] = {}
        for verdict in self.verdicts:
            name = verdict.label or "not scored"
            counts[name] = counts.get(name, 0) + 1
        return counts


def studies_from_results(results: Path, patients: Mapping[str, str] | None = None) -> list[Study]:
    """The studies of a results CSV (a torn last line, from a run still going or killed, is left out)."""
    try:
        return group_studies(read_rows(results), patients)
    except OSError as error:
        raise UsageError(f"cannot read results file {results}: {error.strerror or error}") from None


def write_studies(results: Path, output: str, patients: Mapping[str, str] | None = None) -> StudiesSummary:
    """Write one row per study of the results and say what was written.

    A file is replaced whole and at once (a temporary file beside it, then a rename), so an
    interrupted run leaves the previous studies file, and a re-run after more scoring brings it up
    to date. A file that is not a studies file (the results themselves, say) is left untouched.

    Args:
        results: The results CSV.
        output: The studies file, or `-` for standard output.
        patients: A file's place to its patient, from a patients file.

    Returns:
        The output, the studies and the row of each.
    """
    if output != "-":
        _check_replaceable(Path(output), results)
    studies = studies_from_results(results, patients)
    verdicts = [study.verdict() for study in studies]
    if output == "-":
        with ResultsWriter("-", STUDY_COLUMNS) as writer:
            writer.write(verdicts)
    else:
        try:
            replace_file(Path(output), STUDY_COLUMNS, [verdict.as_record() for verdict in verdicts])
        except OSError as error:
            raise ResultsFileError(f"cannot write studies file {output}: {error.strerror or error}") from None
    return StudiesSummary(output, studies, verdicts)


def _check_replaceable(output: Path, results: Path) -> None:
    if output.exists() and output.resolve() == results.resolve():
        raise ResultsFileError(f"{output} is the results file itself: write the studies to another file")
    if not output.exists() or output.stat().st_size == 0:
        return
    try:
        columns = read_table(output).columns
    except (NotResultsError, OSError, UnicodeDecodeError):
        columns = ()
    if GROUPED_BY not in columns:
        raise ResultsFileError(f"{output} is not an xscan studies file; left untouched: use another -o")
