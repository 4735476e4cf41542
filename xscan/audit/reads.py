"""A reads file (READS.csv): radiologists' reads by key and time, and each read matched to the result it judges.

A read has a `label` (NORMAL or PNEUMONIA, as xscan.model.classes spells them), a `read_at` (an
ISO date or date and time) and one key: `path` (a results path, matched as `xscan report`'s labels
file matches it), or `StudyInstanceUID` or `AccessionNumber` (matched per study through
`xscan studies`' roll-up, its files' headers read again without pixels). Nothing is dropped
silently: a second read of a key with the other label replaces the earlier one, a second read
with the same label is counted once, and reads that match no result are listed; each is said.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from xscan.errors import LabelsError, UsageError
from xscan.model.classes import CLASS_NAMES, parse_label
from xscan.pacs.studies import BY_STUDY, Study, studies_from_results
from xscan.reporting.labels import place
from xscan.scoring.results import RUN_COLUMN, Row, read_rows, unescape_cell

KEYS = ("path", "StudyInstanceUID", "AccessionNumber")  # the key a reads file matches on, the first present


class ReadsError(UsageError, ValueError):
    """A reads file that cannot be read or has nothing in it; the message says why."""


@dataclass(frozen=True)
class Read:
    """One read of a reads file: what the physician called a key's film or study, and when."""

    key: str
    label: int  # 1 pneumonia, 0 normal
    read_at: datetime  # naive, in UTC where the file gave a time zone
    line: int  # where in the reads file, for messages


@dataclass(frozen=True)
class Reads:
    """The reads of a file, one per key (the latest), and what was said about the others."""

    source: str
    key: str  # which of KEYS the file matches on
    reads: list[Read]
    contradicted: list[str] = field(default_factory=list)  # one message per key read with both labels
    duplicated: list[str] = field(default_factory=list)  # one message per key read more than once with one label


@dataclass(frozen=True)
class Judged:
    """A read and the result it judges: the file's row, or its study's verdict (the study's highest score)."""

    read: Read
    row: Row
    run: str  # the results' run that scored it ("" for rows from before the run column)

    @property
    def flagged(self) -> bool:
        """The model's call at the row's threshold; an out-of-scope film is judged by its score, as in the card."""
        return self.row.probability is not None and self.row.probability >= self.row.threshold


@dataclass(frozen=True)
class Matched:
    """The reads matched to results: those judged, and those left out, by why."""

    judged: list[Judged]
    unmatched: list[Read]  # reads whose key names no result
    not_scored: list[Read]  # reads of a file (or study) that could not be scored: no call to judge


def read_reads(source: Path) -> Reads:
    """Read a reads file, one read per key: the latest read of a key counts (the earlier is said to be replaced).

    Args:
        source: The reads CSV.

    Returns:
        The reads, and what was said about contradicting and duplicated ones.

    Raises:
        ReadsError: The file cannot be read, lacks `label`, `read_at` or a key column, has a bad
            label or date (the line is named), or holds no reads.
    """
    try:
        with open(source, newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            columns = reader.fieldnames or []
            key = next((name for name in KEYS if name in columns), None)
            if not columns:
                raise ReadsError(f"{source} is empty: no reads to audit (expected columns label,read_at and a key)")
            missing = [name for name in ("label", "read_at") if name not in columns]
            if missing or key is None:
                needs = missing + ([] if key else [" or ".join(KEYS)])
                raise ReadsError(f"{source} is not a reads file: missing column(s) {', '.join(needs)}")
            rows = [_read(record, key, source, reader.line_num) for record in reader]
    except OSError as error:
        raise ReadsError(f"cannot read reads file {source}: {error.strerror or error}") from None
    if not rows:
        raise ReadsError(f"{source} has a header but no reads: nothing to audit")
    return _latest(rows, str(source), key)


def _read(record: dict[str, str], key: str, source: Path, line: int) -> Read:
    value = unescape_cell((record.get(key) or "").strip())
    if not value:
        raise ReadsError(f"{source} line {line}: the {key} is empty")
    try:
        label = parse_label(record.get("label") or "")
    except LabelsError as error:
        raise ReadsError(f"{source} line {line}: {error}") from None
    return Read(value, label, parse_read_at(record.get("read_at") or "", f"{source} line {line}"), line)


def parse_read_at(text: str, where: str) -> datetime:
    """Parse an ISO date or date and time as a naive UTC datetime (a date is its midnight).

    Args:
        text: The cell.
        where: The file and line, for the error message.

    Returns:
        The moment.

    Raises:
        ReadsError: The text is not an ISO date or date and time.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ReadsError(f"{where}: read_at {text!r} is not an ISO date or date and time (2026-03-01T14:05)") from None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _latest(reads: list[Read], source: str, key: str) -> Reads:
    by_key: dict[str, Read] = {}
    contradicted: dict[str, str] = {}
    duplicated: dict[str, list[int]] = {}
    # In time order (the file's order among reads of one moment): the later read of a key is the one that counts.
    for read in sorted(reads, key=lambda r: (r.read_at, r.line)):
        earlier = by_key.get(read.key)
        if earlier is None:
            by_key[read.key] = read
        elif earlier.label != read.label:
            contradicted[read.key] = (
                f"{read.key}: read {CLASS_NAMES[earlier.label]} at {earlier.read_at.isoformat()} "
                f"(line {earlier.line}), then {CLASS_NAMES[read.label]} at {read.read_at.isoformat()} "
                f"(line {read.line}): the later read counts"
            )
            by_key[read.key] = read
        else:
            duplicated.setdefault(read.key, [earlier.line]).append(read.line)
    duplicates = [
        f"{name}: read {CLASS_NAMES[by_key[name].label]} {len(lines)} times (lines {', '.join(map(str, lines))}): "
        "counted once, at the first"
        for name, lines in duplicated.items()
        if name not in contradicted
    ]
    ordered = sorted(by_key.values(), key=lambda r: (r.read_at, r.line))
    return Reads(source, key, ordered, list(contradicted.values()), duplicates)


def match_reads(reads: Reads, results: Path) -> Matched:
    """Match each read with the result it judges: by path as `report`'s labels file matches, else per study.

    Args:
        reads: The reads.
        results: The results CSV.

    Returns:
        The reads judged, and those unmatched or of files not scored.
    """
    if reads.key == "path":
        items = _by_place(read_rows(results))
        keyed = {read.key: items.get(place(read.key)) for read in reads.reads}
    else:
        studies = {_study_key(study, reads.key): study for study in studies_from_results(results)}
        keyed = {read.key: _verdict(studies[read.key]) if read.key in studies else None for read in reads.reads}
    judged, unmatched, not_scored = [], [], []
    for read in reads.reads:
        found = keyed[read.key]
        if found is None:
            unmatched.append(read)
        elif found[0].probability is None:
            not_scored.append(read)
        else:
            judged.append(Judged(read, *found))
    return Matched(judged, unmatched, not_scored)


def _by_place(rows: Iterable[Row]) -> dict[str, tuple[Row, str]]:
    # A file scored again in a later run is judged by its latest row.
    return {place(row.path): (row, row.trailing_columns.get(RUN_COLUMN, "")) for row in rows}


def _study_key(study: Study, key: str) -> str:
    if key == "AccessionNumber":
        return study.accession_number or f"\0no accession number: {study.key}"  # never matches a read
    return study.key if study.grouped_by == BY_STUDY else f"\0not a DICOM study: {study.key}"


def _verdict(study: Study) -> tuple[Row, str]:
    runs = [f.row.trailing_columns.get(RUN_COLUMN, "") for f in study.files]
    numbered = [int(run) for run in runs if run.isdigit()]
    return study.verdict(), str(max(numbered)) if numbered else ""
