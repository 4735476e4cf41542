"""`xscan sr`: options, and what was written and sent; the reports are xscan.pacs's."""

from __future__ import annotations

from pathlib import Path

import typer

from xscan.about import DISCLAIMER
from xscan.cli.app import exit_codes, say
from xscan.errors import UsageError


def sr(
    results: Path = typer.Argument(..., exists=True, dir_okay=False, help="Results CSV written by xscan score."),
    output: Path = typer.Option(
        ..., "-o", "--output", file_okay=False, help="Folder for the reports, one <StudyInstanceUID>.dcm each."
    ),
    send: str = typer.Option(
        None, "--send", metavar="AET@HOST:PORT", help="Store the reports on this DICOM node (C-STORE)."
    ),
    calling_aet: str = typer.Option("XSCAN", "--calling-aet", help="xscan's own AE title, as the node knows it."),
) -> None:
    """DICOM Structured Reports of the results, one per study, optionally sent to a PACS (needs xscan[pacs]).

    For each DICOM study with a scored image: a Comprehensive 3D SR (TID 1500 measurement
    report) in the same study as a new series, with the patient and study copied from the
    images' headers; per scored image a reference to it, the finding pneumonia present or absent
    (or not assessed: out of scope, with the reason) and the probability; the study's verdict;
    xscan's version, the model id and the threshold; VerificationFlag UNVERIFIED. Non-DICOM files
    get no report and are counted. The same results give the same report, so a re-run rewrites
    nothing. xscan aids a physician; it is not a diagnostic device.

    --send stores the reports by C-STORE and records each one stored in OUTPUT/sent.csv: a re-run
    sends only what the node has not acknowledged. Exit codes: 0 all written (and stored); 2 a
    bad option or xscan[pacs] not installed; 3 could not deliver (the node refused or did not
    answer, or rejected a report: what was not stored stays in OUTPUT, run again to send it).

    Example:

    \b
        xscan score ./pacs-export -o results.csv
        xscan sr results.csv -o reports/
        xscan sr results.csv -o reports/ --send ORTHANC@127.0.0.1:4242
    """
    from xscan.pacs.extra import require_pacs_extra

    with exit_codes():
        require_pacs_extra()
        from xscan.pacs.run import report_studies
        from xscan.pacs.send import Node

        node = Node.parse(send) if send else None
        if not 0 < len(calling_aet.strip()) <= 16:
            raise UsageError("--calling-aet must have 1 to 16 characters")
        done = report_studies(results, output, node, calling_ae_title=calling_aet.strip())
    written = done.written
    say(
        f"{len(written.paths)} reports in {output} ({written.new} new or changed); no report for {written.not_dicom} "
        f"non-DICOM files and {written.studies_without_report} DICOM studies without a scored image"
    )
    if done.sent is not None:
        say(f"stored {len(done.sent.stored)} on {done.sent.node}; {len(done.sent.already)} were stored there before")
    say(DISCLAIMER)
