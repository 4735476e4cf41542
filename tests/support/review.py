"""The review page as the tests build it (conftest.py's review_run) and what its galleries must hold."""

from __future__ import annotations

import csv
from pathlib import Path

from xscan.reporting.galleries import OUT_OF_SCOPE

REVIEW_GALLERY = 3  # scans shown a gallery in review_run


def expected_galleries(results: Path) -> dict[str, int]:
    """How many rows of RESULTS belong to each labelled gallery, counted here from the CSV alone."""
    with open(results, newline="") as stream:
        records = list(csv.DictReader(stream))
    scored = [r for r in records if not r["error"] and r["label"] != OUT_OF_SCOPE]
    flagged = {r["path"]: float(r["probability"]) >= float(r["threshold"]) for r in scored}
    return {
        "false-negatives": sum(1 for r in scored if "/PNEUMONIA/" in r["path"] and not flagged[r["path"]]),
        "false-positives": sum(1 for r in scored if "/NORMAL/" in r["path"] and flagged[r["path"]]),
        "nearest-threshold": len(scored),
        "out-of-scope": sum(1 for r in records if r["label"] == OUT_OF_SCOPE),
        "errors": sum(1 for r in records if r["error"]),
    }
