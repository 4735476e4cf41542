"""What `xscan sr` does: the studies of a results CSV -> one structured report each in a folder -> optionally a PACS."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from xscan.pacs.send import CALLING_AE_TITLE, SENT_LOG, Node, Sent, send_reports
from xscan.pacs.sr import Written, write_reports
from xscan.pacs.studies import file_of, group_studies, studies_from_results
from xscan.scoring.results import read_rows


@dataclass(frozen=True)
class Delivered:
    written: Written
    sent: Sent | None  # None without a node to send to


def report_studies(
    results: Path,
    folder: Path,
    node: Node | None = None,
    calling_ae_title: str = CALLING_AE_TITLE,
    *,
    files: Collection[Path] | None = None,
) -> Delivered:
    """Write FOLDER/<StudyInstanceUID>.dcm for each DICOM study of RESULTS, then store on NODE those it lacks.

    FILES, when given, limits the reports to the studies of those scored files (`xscan listen`
    reports a study once it is complete, while others still arrive); only their headers are read. The sent log is
    FOLDER/sent.csv. A DeliveryError leaves every report in FOLDER and the log saying which were
    stored, so that the same command, run again, sends only the rest.
    """
    if files is None:
        found = studies_from_results(results)
    else:
        wanted = set(files)
        found = group_studies(row for row in read_rows(results) if file_of(row) in wanted)
    written = write_reports(found, folder)
    if node is None:
        return Delivered(written, None)
    return Delivered(written, send_reports(written.paths, node, folder / SENT_LOG, calling_ae_title))
