"""`xscan drift`: options, and the verdict printed (or one JSON object); the test is xscan.reporting.drift's."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from xscan.cli.app import exit_codes, say
from xscan.errors import EXIT_DRIFT, EXIT_OK


def drift(
    results: Path = typer.Argument(..., exists=True, dir_okay=False, help="Results CSV written by xscan score."),
    every_row: bool = typer.Option(False, "--all", help="Judge every row of the file, not only its last run's."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    weights: Path = typer.Option(
        None,
        "--weights",
        file_okay=False,
        help="Weights folder whose card holds the reference (default: the bundled model).",
    ),
    baseline: Path = typer.Option(
        None,
        "--baseline",
        exists=True,
        dir_okay=False,
        help="Results CSV of an earlier run that "
        "was fine: also compare the DICOM acquisition headers of this run's files with those of "
        "every file it scored.",
    ),
    prevalence: float = typer.Option(
        None,
        "--prevalence",
        min=0.001,
        max=0.999,
        help="The site's share of pneumonia (as xscan calibrate takes it): compare with the reference's classes "
        "mixed at this share instead of the best-fitting mix, so more flagged scans than it allows are drift.",
    ),
) -> None:
    """Are these scans like the model's reference? Exit 0 no drift, 5 drift, 2 too few scans to tell.

    Compares the scans of the results file's last run (the rows with the highest `run` number;
    --all: every row) with the reference the model card stores, taken from validation scans that
    chose nothing: the model's score, the scope check's feature distance and score, and the
    film's grey-level mean and spread. Each is tested against the best mixture of the
    reference's normal and pneumonia films, so a batch with more or fewer pneumonia films is not
    drift; Holm's correction keeps false alarms at 5 % or fewer. At least 100 scans are needed.
    With --prevalence P (the site's share of pneumonia) the mix is fixed at P instead: a shift
    that moves normal films toward pneumonia, which looks like more pneumonia without it, is drift.
    On drift (exit 5) the card's figures and any site calibration may not hold: check the source
    (a new X-ray unit, export, ward) and recalibrate with xscan calibrate.

    With --baseline OLD.csv it also reads the DICOM headers of this run's files and of every file
    the baseline scored again (no pixels)
    and compares Manufacturer, ManufacturerModelName, PhotometricInterpretation, BitsStored,
    PixelSpacing, ViewPosition and PatientAge (chi-square, KS for the age; Holm), each family of
    tests at half the level so false alarms stay at 5 % or fewer.

    Example:

    \b
        xscan score ./scans -o results.csv
        xscan drift results.csv
        xscan drift results.csv --all --json
        xscan drift results.csv --baseline last-month.csv
        xscan drift results.csv --prevalence 0.2
    """
    from xscan.reporting.drift import drift_of_results

    with exit_codes():
        verdict = drift_of_results(results, weights, every_row, baseline, prevalence)
    if as_json:
        typer.echo(json.dumps(verdict.as_dict()))
    else:
        say(verdict.summary())
        for finding in verdict.findings:
            say(("  DRIFT " if finding.drifted else "  ok    ") + finding.describe())
        for header in verdict.headers:
            say(("  DRIFT " if header.drifted else "  ok    ") + header.describe())
        for reason in verdict.left_out:
            say(f"  not tested: {reason}")
    raise typer.Exit(EXIT_DRIFT if verdict.drifted else EXIT_OK)
