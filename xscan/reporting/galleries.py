"""Which scans of a results file a reviewer should see first: misses, false alarms, borderline, out of scope, failed.

Pure functions of the results' rows, the report's threshold and the ground truth; the review page
(xscan.reporting.review_page) draws them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xscan.model.classes import OUT_OF_SCOPE
from xscan.reporting.labels import GroundTruth
from xscan.scoring.results import NEGATIVE, POSITIVE, Row


@dataclass(frozen=True)
class Entry:
    """One row as a gallery shows it."""

    path: str
    probability: float | None
    label: str  # PNEUMONIA / NORMAL at the report's threshold, OUT_OF_SCOPE as written, "" for a failed row
    truth: int | None  # 1 pneumonia, 0 normal, None unknown
    note: str = ""  # the error of a failed row, or why a scan is out of scope


@dataclass(frozen=True)
class Gallery:
    """One gallery of the review page: its title, and its first entries, most wrong first."""

    key: str  # stable identifier: the page's anchor and data-gallery attribute
    title: str
    order: str  # what comes first, in words
    total: int  # rows that belong here, before the cap
    entries: list[Entry]  # the first `size` of them


def classify(
    rows: Sequence[Row], threshold: float, truth: GroundTruth | None
) -> tuple[list[Entry], list[Entry], list[Entry]]:
    """Sort the rows into what galleries show, apart: scored in scope, out of scope, failed.

    Args:
        rows: the results' rows.
        threshold: the report's threshold, which labels the scored rows.
        truth: the ground truth, if any.

    Returns:
        The three lists, each in file order.
    """
    scored, out_of_scope, failed = [], [], []
    for row in rows:
        known = truth(row.path) if truth is not None else None
        if row.error or row.probability is None:
            failed.append(Entry(row.path, None, "", known, row.error or "no probability"))
        elif row.label == OUT_OF_SCOPE:
            out_of_scope.append(Entry(row.path, row.probability, OUT_OF_SCOPE, known, row.scope))
        else:
            label = POSITIVE if row.probability >= threshold else NEGATIVE
            scored.append(Entry(row.path, row.probability, label, known))
    return scored, out_of_scope, failed


def choose_galleries(rows: Sequence[Row], threshold: float, truth: GroundTruth | None, size: int) -> list[Gallery]:
    """Choose the galleries of the review page, each sorted with the most wrong first and capped in size.

    With ground truth: false negatives (lowest probability first), false positives (highest
    first); without it: the highest and the lowest probabilities. Then, either way: the scans
    nearest the threshold, the out-of-scope scans and the rows that could not be scored (both
    in file order). Out-of-scope scans are in no other gallery.

    Args:
        rows: the results' rows.
        threshold: the report's threshold.
        truth: the ground truth, if any.
        size: the most scans a gallery shows.

    Returns:
        The galleries, in page order.
    """
    scored, out_of_scope, failed = classify(rows, threshold, truth)
    if truth is not None:
        galleries = [
            _gallery(
                "false-negatives",
                "False negatives: pneumonia called NORMAL",
                "lowest probability first",
                [e for e in scored if e.truth == 1 and e.label == NEGATIVE],
                lambda e: e.probability,
                size,
            ),
            _gallery(
                "false-positives",
                "False positives: normal called PNEUMONIA",
                "highest probability first",
                [e for e in scored if e.truth == 0 and e.label == POSITIVE],
                lambda e: -e.probability,
                size,
            ),
        ]
    else:
        galleries = [
            _gallery(
                "highest", "Highest probability of pneumonia", "highest first", scored, lambda e: -e.probability, size
            ),
            _gallery(
                "lowest", "Lowest probability of pneumonia", "lowest first", scored, lambda e: e.probability, size
            ),
        ]
    return [
        *galleries,
        _gallery(
            "nearest-threshold",
            f"Nearest the threshold ({threshold:.4f})",
            "nearest first",
            scored,
            lambda e: abs(e.probability - threshold),
            size,
        ),
        _gallery(
            "out-of-scope", "Out of scope: not scored as NORMAL or PNEUMONIA", "file order", out_of_scope, None, size
        ),
        _gallery("errors", "Could not be scored", "file order", failed, None, size),
    ]


def _gallery(
    key: str, title: str, order: str, members: list[Entry], sort_key: Callable[[Entry], float] | None, size: int
) -> Gallery:
    # Ties broken by path, so the page is the same on every run.
    chosen = members if sort_key is None else sorted(members, key=lambda e: (sort_key(e), e.path))
    return Gallery(key, title, order, len(members), chosen[:size])
