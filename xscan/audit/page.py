"""The audit as `xscan report --html` shows it: the review page's audit block, its table and plot."""

from __future__ import annotations

from pathlib import Path

from xscan.audit.check import Audit
from xscan.audit.plot import write_audit_plot
from xscan.reporting.review_page import PLOTS, AuditBlock

PLOT = "audit.png"


def audit_block(audit: Audit, folder: Path) -> AuditBlock:
    """AUDIT for the review page in FOLDER: its plot drawn into FOLDER/plots, a row per period.

    Args:
        audit: what xscan.audit.check.audit_results found.
        folder: the review page's folder.

    Returns:
        The block `write_review_page` shows.

    Raises:
        PlotsUnavailable: matplotlib is not installed (the review page needs it already).
    """
    write_audit_plot(audit, folder / PLOTS / PLOT)
    rows = [
        [
            period.name,
            str(period.normal),
            str(period.pneumonia),
            period.sensitivity.describe(),
            period.specificity.describe(),
            period.ppv.describe(),
            ", ".join(figure for figure, reached in period.reached.items() if reached),
        ]
        for period in audit.periods
    ]
    return AuditBlock(
        audit.verdict,
        audit.summary(),
        [test.promised.describe() for test in audit.tests],
        ["period", "normal", "pneumonia", "sensitivity", "specificity", "PPV", "alarm"],
        rows,
        f"{PLOTS}/{PLOT}",
    )
