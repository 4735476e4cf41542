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
    images: bool = typer.Option(
        True, "--images/--no-images", help="Also a heatmap Secondary Capture per scored film (OUTPUT/heatmaps/)."
    ),
    uid_root: str = typer.Option(
        None, "--uid-root", help="Your site's DICOM UID root for the UIDs xscan makes; default: xscan's own."
    ),
    weights: Path = typer.Option(
        None, help="Weights folder of the results' model, for the heatmaps; default: bundled."
    ),
) -> None:
    """DICOM Structured Reports of the results, one per study, optionally sent to a PACS (needs xscan[pacs]).

    For each DICOM study with a scored image: a Comprehensive 3D SR (TID 1500 measurement
    report) in the same study as a new series, with the patient and study copied from the
    images' headers; an image library; per scored image a reference to it, the finding pneumonia
    present or absent with the probability (or undetermined: out of scope, with the reason and no
    probability); the study's verdict; xscan's version, the model id and the threshold;
    VerificationFlag UNVERIFIED. With --images (the default), per scored film a Secondary
    Capture in a second new series, "xscan heatmaps (unverified)": the film as a viewer shows it
    with the heatmap and a burned-in banner (verdict, probability and threshold, model, UNVERIFIED).
    Non-DICOM files get no report and are counted; so are studies whose every image the DICOM
    policy skipped. The same results give the same report, so a re-run rewrites nothing; changed
    results amend the study's report (the next InstanceNumber, naming the one it replaces).
    xscan aids a physician; it is not a diagnostic device.

    --send stores the reports and images by C-STORE and records each one stored in
    OUTPUT/sent.csv: a re-run sends only what the node has not acknowledged. Exit codes: 0 all
    written (and stored); 2 a bad option, xscan[pacs] not installed, a scored file gone since
    scoring, results of another model than --weights; 3 could not deliver (a host that does not
    resolve, the node refused or did not answer, or rejected a file: what was not stored stays in
    OUTPUT, run again to send it), or OUTPUT cannot be written; 70 a bug (--debug shows it).

    Example:

    \b
        xscan score ./pacs-export -o results.csv
        xscan sr results.csv -o reports/
        xscan sr results.csv -o reports/ --send ORTHANC@127.0.0.1:4242
        xscan sr results.csv -o reports/ --no-images --uid-root 1.2.826.0.1.3680043.10.543
    """
    from xscan.pacs.extra import require_pacs_extra

    with exit_codes():
        require_pacs_extra()
        from xscan.pacs.run import report_studies
        from xscan.pacs.send import Node

        node = Node.parse(send) if send else None
        if not 0 < len(calling_aet.strip()) <= 16:
            raise UsageError("--calling-aet must have 1 to 16 characters")
        done = report_studies(
            results,
            output,
            node,
            calling_ae_title=calling_aet.strip(),
            images=images,
            uid_root_text=uid_root,
            weights=weights,
        )
    written = done.written
    amended = f", {written.amended} of them amending an earlier report" if written.amended else ""
    say(
        f"{len(written.paths)} reports in {output} ({written.new} new or changed{amended}); no report for "
        f"{written.not_dicom} non-DICOM files and {written.studies_without_report} DICOM studies without a scored image"
    )
    if written.all_skipped:
        say(f"{written.all_skipped} DICOM studies got no report: the DICOM policy skipped every image of them")
    if done.images is not None:
        say(f"{len(done.images.paths)} heatmap images in {output / 'heatmaps'} ({done.images.new} new)")
    if done.sent is not None:
        say(f"stored {len(done.sent.stored)} on {done.sent.node}; {len(done.sent.already)} were stored there before")
    say(DISCLAIMER)
