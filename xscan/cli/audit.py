"""`xscan audit`: options, and the audit printed (or one JSON object) and drawn; the audit is xscan.audit's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from xscan.about import DISCLAIMER
from xscan.cli.app import exit_codes, say
from xscan.errors import EXIT_DRIFT, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from xscan.audit.check import Audit

LISTED = 20  # unmatched reads and messages shown in text, before "and N more" (--json lists all)


def audit(
    results: Path = typer.Argument(..., exists=True, dir_okay=False, help="Results CSV written by xscan score."),
    reads: Path = typer.Option(
        ...,
        "--reads",
        exists=True,
        dir_okay=False,
        help="CSV of radiologists' reads: label, read_at (ISO date or date and time) and a key, "
        "path or StudyInstanceUID or AccessionNumber.",
    ),
    by: str = typer.Option("week", "--by", metavar="day|week|month|run", help="Periods: by read_at, or the run."),
    calibration: Path = typer.Option(
        None, "--calibration", exists=True, dir_okay=False, help="SITE.json whose stated figures are the promise."
    ),
    sensitivity: float = typer.Option(
        None, "--promise-sensitivity", min=0.0, max=1.0, help="The promised sensitivity (over SITE.json's, the card's)."
    ),
    specificity: float = typer.Option(
        None, "--promise-specificity", min=0.0, max=1.0, help="The promised specificity (over SITE.json's, the card's)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    plot: Path = typer.Option(
        None, "--plot", dir_okay=False, help="Draw each figure per period into this PNG (needs xscan[plots])."
    ),
) -> None:
    """Do the results still keep their promise, by radiologists' reads? Exit 0 holds, 5 broken, 2 too few reads.

    Matches each read to the result it judges (by path, or per study by StudyInstanceUID or
    AccessionNumber, the files' headers read again without pixels) and shows, per period, the
    reads of each class with sensitivity, specificity and PPV and their 95 % Wilson intervals.
    The promise is the options', else SITE.json's (its guaranteed sensitivity, its cross-fitted
    specificity's lower bound), else the model card's; it says which. Each promised figure is
    watched read by read by a one-sided Bernoulli CUSUM (Page 1954; Reynolds & Stoumbos 1999)
    whose limit is set for all the reads there are, Holm across the two figures: while the
    promise holds, false alarms stay at 5 % or fewer. With too few reads it says how many of
    each class would see a 10-point drop with 80 % power. Reads that match nothing, a key read
    twice (the later read counts) and duplicates are all listed.
    xscan aids a physician; it is not a diagnostic device.

    Example:

    \b
        xscan audit results.csv --reads reads.csv
        xscan audit results.csv --reads reads.csv --by month --calibration SITE.json --plot audit.png
        xscan audit studies.csv --reads ris-export.csv --promise-specificity 0.9 --json
    """
    from xscan.audit.check import BROKEN, HOLDS, audit_results

    with exit_codes():
        if plot:
            from xscan.reporting.plots import require_matplotlib

            require_matplotlib()  # fail before the work, not after it
        found = audit_results(results, reads, by, calibration, sensitivity, specificity)
        if plot:
            from xscan.audit.plot import write_audit_plot

            say(f"wrote {write_audit_plot(found, plot)}")
    if as_json:
        typer.echo(json.dumps(found.as_dict()))
    else:
        _print(found)
    raise typer.Exit({HOLDS: EXIT_OK, BROKEN: EXIT_DRIFT}.get(found.verdict, EXIT_USAGE))


def _print(found: Audit) -> None:
    typer.echo(f"reads: {found.reads_source}, matched by {found.key}, periods by {found.by}")
    for test in found.tests:
        typer.echo(f"promise: {test.promised.describe()}")
    typer.echo(f"{'period':<12} {'normal':>6} {'pneum.':>6}  {'sensitivity':<21} {'specificity':<21} {'PPV':<21}")
    for period in found.periods:
        alarms = [figure for figure, reached in period.reached.items() if reached]
        typer.echo(
            f"{period.name:<12} {period.normal:>6} {period.pneumonia:>6}  {period.sensitivity.describe():<21} "
            f"{period.specificity.describe():<21} {period.ppv.describe():<21}"
            + (f" ALARM: {', '.join(alarms)}" if alarms else "")
        )
    for test in found.tests:
        state = "BROKEN" if test.broken else "holds "
        typer.echo(
            f"  {state} {test.promised.figure}: {test.failures} wrong of {test.reads} reads; CUSUM highest "
            f"{test.highest}, limit {test.limit} at level {test.level:.3g} (p = {test.p_value:.2g}); "
            f"{test.reads_needed} reads see a 10-point drop with {found.power:.0%} power"
        )
    _listed("read(s) matched no result (left out)", found.unmatched)
    _listed("read(s) of a file or study that could not be scored (left out)", found.not_scored)
    _listed("key(s) read with both labels", found.contradicted)
    _listed("key(s) read more than once", found.duplicated)
    for note in found.notes:
        typer.echo(f"note: {note}")
    typer.echo(found.summary())
    typer.echo(DISCLAIMER)


def _listed(what: str, items: list[str]) -> None:
    if not items:
        return
    more = f" and {len(items) - LISTED} more (--json lists all)" if len(items) > LISTED else ""
    typer.echo(f"{len(items)} {what}: {'; '.join(items[:LISTED])}{more}")
