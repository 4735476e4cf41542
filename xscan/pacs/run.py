"""What `xscan sr` does: the studies of a results CSV -> one structured report each in a folder -> optionally a PACS."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from xscan.pacs.send import CALLING_AE_TITLE, SENT_LOG, Node, Sent, send_reports
from xscan.pacs.sr import Written, write_reports
from xscan.pacs.studies import studies_from_results


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
    studies: Collection[str] | None = None,
) -> Delivered:
    """Write FOLDER/<StudyInstanceUID>.dcm for each DICOM study of RESULTS, then store on NODE those it lacks.

    STUDIES, when given, are the study keys to report (`xscan listen` reports a study once it is
    complete, while others are still arriving); the rest are left alone. The sent log is
    FOLDER/sent.csv. A DeliveryError leaves every report in FOLDER and the log saying which were
    stored, so that the same command, run again, sends only the rest.
    """
    found = studies_from_results(results)
    written = write_reports([study for study in found if studies is None or study.key in studies], folder)
    if node is None:
        return Delivered(written, None)
    return Delivered(written, send_reports(written.paths, node, folder / SENT_LOG, calling_ae_title))
