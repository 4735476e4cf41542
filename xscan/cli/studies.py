"""`xscan studies`: options, and one line on what was written; the roll-up is xscan.pacs.studies'."""

from __future__ import annotations

from pathlib import Path

import typer

from xscan.about import DISCLAIMER
from xscan.cli.app import exit_codes, say
from xscan.errors import UsageError


def studies(
    results: Path = typer.Argument(..., exists=True, dir_okay=False, help="Results CSV written by xscan score."),
    output: str = typer.Option(
        ..., "-o", "--output", help="The studies CSV to write (replaced whole); - for standard output."
    ),
    patients_file: Path = typer.Option(
        None,
        "--patients-file",
        exists=True,
        dir_okay=False,
        help="Patients of non-DICOM files: a CSV with columns path,patient (a train labels "
        "file with its patient column is one); paths as in the results or below --patients-root.",
    ),
    patients_root: Path = typer.Option(
        None, "--patients-root", file_okay=False, help="The folder the --patients-file paths are relative to."
    ),
) -> None:
    """One verdict per study: the results of each study's images rolled up into one row.

    A study is the DICOM StudyInstanceUID, read again from the scored files' headers (no
    pixels); a non-DICOM file belongs to its patient (a file-name pattern such as person12_...,
    or --patients-file), else it is a study of its own. The probability is the largest among the
    in-scope images, so a second view never hides a finding: label PNEUMONIA if any in-scope
    image is at or above the threshold, NORMAL if all are below it, OUT_OF_SCOPE if none is in
    scope, empty with an error if no file could be scored. The first six columns are those of
    the results CSV, `path` holding the study key, so `xscan report` reads the studies file too.
    xscan aids a physician; it is not a diagnostic device.

    Example:

    \b
        xscan score ./pacs-export -o results.csv
        xscan studies results.csv -o studies.csv
        xscan report studies.csv --labels-file study-labels.csv
    """  # noqa: D301, D412  (Click keeps a paragraph that starts with \b, a backspace, as written)
    from xscan.pacs.studies import read_patients, write_studies

    with exit_codes():
        if patients_root and not patients_file:
            raise UsageError(
                "--patients-root says where the paths of a --patients-file are relative to: give --patients-file too"
            )
        patients = read_patients(patients_file, patients_root) if patients_file else None
        summary = write_studies(results, output, patients)
    counts = ", ".join(f"{count} {label}" for label, count in summary.by_label().items())
    say(
        f"{len(summary.studies)} studies from {sum(len(s.files) for s in summary.studies)} files ({counts or 'none'})"
        + ("" if output == "-" else f"; wrote {output}")
    )
    say(DISCLAIMER)
