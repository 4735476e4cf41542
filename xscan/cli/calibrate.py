"""`xscan calibrate`: options, and the site calibration printed as a table; the fitting is xscan.site.calibrate's."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from xscan.about import DISCLAIMER
from xscan.cli.app import exit_codes
from xscan.cli.options import ground_truth, labels_file_option, labels_option, labels_root_option
from xscan.errors import ResultsWriteError, UsageError

if TYPE_CHECKING:
    from xscan.model.site_calibration import SiteCalibration


def calibrate(
    results: Path = typer.Argument(..., exists=True, dir_okay=False, help="Results CSV written by xscan score (without --calibration)."),
    output: Path = typer.Option(..., "-o", "--output", dir_okay=False, help="The site calibration file to write (SITE.json)."),
    labels: bool = labels_option(),
    labels_file: Path = labels_file_option(),
    labels_root: Path = labels_root_option(),
    target_sensitivity: float = typer.Option(0.95, min=0.01, max=1.0, help="The site threshold is the highest reaching this sensitivity."),
    prevalence: float = typer.Option(None, min=0.001, max=0.999, help="The site's share of pneumonia, when the labelled sample's "
                                     "share differs from it (say, a sample of 50 + 50): moves the calibration's intercept there."),
) -> None:
    """Make the model your site's own: a threshold and calibration from a few labelled local scans.

    Score a labelled local sample with the bundled model, then calibrate on its results. Only
    rows with ground truth, a probability and no error count (the rest are counted and named);
    at least 20 scans of each class are needed. SITE.json holds the base model id, the new
    threshold (the highest reaching the target sensitivity on these scans), the refitted
    calibration (intercept; slope too from 100 scans of each class), the counts, and the
    sensitivity and specificity at the new threshold with 95 % intervals, on these scans and
    cross-checked on scans that did not choose it. Then score with --calibration SITE.json.
    xscan aids a physician; it is not a diagnostic device.

    Example:

    \b
        xscan score ./local-sample -o sample.csv
        xscan calibrate sample.csv --labels -o site.json
        xscan score ./scans -o results.csv --calibration site.json
    """
    from xscan.reporting.report import read_results
    from xscan.site.calibrate import fit_site_calibration, select_rows

    with exit_codes():
        truth = ground_truth(labels, labels_file, labels_root)
        if truth is None:
            raise UsageError("calibrate needs ground truth: --labels or --labels-file")
        labelled = select_rows(read_results(results), truth)
        site = fit_site_calibration(labelled, target_sensitivity, prevalence)
        try:
            output.write_text(site.to_json())
        except OSError as error:
            raise ResultsWriteError(f"cannot write {output}: {error.strerror or error}") from None
        _print_site(site, labelled.left_out, output)


def _print_site(site: SiteCalibration, left_out: dict[str, list[str]], output: Path) -> None:
    console = Console()
    table = Table(title=f"site calibration for {site.base_model}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("scans used", f"{site.counts['used']} ({site.counts['NORMAL']} NORMAL, {site.counts['PNEUMONIA']} PNEUMONIA)")
    table.add_row("threshold", f"{site.threshold:.4f} (highest reaching sensitivity >= {site.target_sensitivity:g} on these scans)")
    table.add_row("calibration", f"sigmoid({site.slope:.3f} * logit(p) + {site.intercept:.3f}), refitted: {site.refit}")
    for name in ("sensitivity", "specificity"):
        figure = site.at_threshold[name]
        low, high = figure["interval"]
        table.add_row(name, f"{figure['value']:.3f} (95 % CI {low:.3f}-{high:.3f}) on these scans; "
                      f"{site.cross_checked[name]:.3f} cross-checked ({site.cross_checked['folds']} folds)")
    console.print(table)
    for reason, paths in left_out.items():
        more = f" (and {len(paths) - 3} more)" if len(paths) > 3 else ""
        console.print(f"left out, {reason}: {len(paths)}: {'; '.join(paths[:3])}{more}", markup=False, highlight=False)
    console.print(f"wrote {output}; score with --calibration {output}", markup=False, highlight=False)
    console.print(DISCLAIMER)
