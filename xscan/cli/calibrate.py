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
from xscan.errors import UsageError

if TYPE_CHECKING:
    from xscan.model.site_calibration import SiteCalibration


def calibrate(
    results: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="Results CSV written by xscan score (without --calibration)."
    ),
    output: Path = typer.Option(
        ..., "-o", "--output", dir_okay=False, help="The site calibration file to write (SITE.json)."
    ),
    labels: bool = labels_option(),
    labels_file: Path = labels_file_option(),
    labels_root: Path = labels_root_option(),
    target_sensitivity: float = typer.Option(
        0.95, min=0.01, max=0.999, help="The sensitivity the threshold promises on new scans."
    ),
    confidence: float = typer.Option(
        None,
        min=0.5,
        max=0.999,
        help="Promise the target sensitivity itself with this probability "
        "(say 0.95), not only on average; needs more pneumonia scans (59 for 0.95 and 0.95).",
    ),
    prevalence: float = typer.Option(
        None,
        min=0.001,
        max=0.999,
        help="The site's share of pneumonia, when the labelled sample's "
        "share differs from it (say, a sample of 50 + 50): moves the calibration's intercept there.",
    ),
) -> None:
    """Make the model your site's own: a threshold with a stated guarantee and a calibration from a few labelled scans.

    Score a labelled local sample with the bundled model, then calibrate on its results. Only
    rows with ground truth, a probability and no error count (the rest are counted and named);
    at least 20 scans of each class are needed. The threshold is an order statistic of the
    sample's pneumonia scores: by default the expected sensitivity on new scans like these is at
    least the target (split-conformal; 19 pneumonia scans for 0.95); with --confidence C the
    sensitivity is at least the target with probability C (Neyman-Pearson umbrella rule; 59
    pneumonia scans for 0.95 and 0.95). Too few pneumonia scans for the rule: exit 2, saying how
    many are needed. SITE.json holds the base model id, the threshold, the rule and its guarantee,
    the range of sensitivity to expect on new scans, specificity with a 95 % interval on the normal
    scans (which did not choose the threshold), and the refitted calibration (intercept, at the
    sample's pneumonia share unless --prevalence; slope too from 100 scans of each class). Then
    score with --calibration SITE.json. xscan aids a physician; it is not a diagnostic device.

    Example:

    \b
        xscan score ./local-sample -o sample.csv
        xscan calibrate sample.csv --labels -o site.json
        xscan calibrate sample.csv --labels --confidence 0.95 --prevalence 0.1 -o site.json
        xscan score ./scans -o results.csv --calibration site.json
    """  # noqa: D301, D412  (Click keeps a paragraph that starts with \b, a backspace, as written)
    from xscan.site.calibrate import calibrate_results

    with exit_codes():
        truth = ground_truth(labels, labels_file, labels_root)
        if truth is None:
            raise UsageError("calibrate needs ground truth: --labels or --labels-file")
        done = calibrate_results(results, truth, output, target_sensitivity, prevalence, confidence)
        _print_site(done.site, done.left_out, output)


def _print_site(site: SiteCalibration, left_out: dict[str, list[str]], output: Path) -> None:
    console = Console()
    table = Table(title=f"site calibration for {site.base_model}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "scans used", f"{site.counts['used']} ({site.counts['NORMAL']} NORMAL, {site.counts['PNEUMONIA']} PNEUMONIA)"
    )
    table.add_row("rule", site.guarantee)
    table.add_row(
        "threshold",
        f"{site.threshold:.4f} on the site-calibrated probability (rank {site.rank} from the lowest of the "
        f"{site.counts['PNEUMONIA']} pneumonia scores)",
    )
    spread = site.sensitivity_range
    low_q, high_q = spread["quantiles"]
    table.add_row(
        "sensitivity on new scans",
        f"expected {spread['expected']:.3f}; {low_q:.0%}-{high_q:.0%} range "
        f"{spread['low']:.3f}-{spread['high']:.3f} (miss rate {spread['miss_rate']})",
    )
    checked = site.cross_checked
    in_sample = site.at_threshold["sensitivity"]["value"]
    leave_one_out = "" if checked["sensitivity"] is None else f"{checked['sensitivity']:.3f} "
    table.add_row(
        "sensitivity, this sample",
        f"{in_sample:.3f} on the scans that chose the threshold (optimistic); "
        f"{leave_one_out}{checked['sensitivity_method']}",
    )
    low, high = checked["specificity_interval"]
    table.add_row(
        "specificity", f"{checked['specificity']:.3f} (95 % CI {low:.3f}-{high:.3f}) on {checked['specificity_method']}"
    )
    if checked.get("specificity_cross_fitted") is not None:
        low, high = checked["specificity_cross_fitted_interval"]
        table.add_row(
            "specificity, cross-fitted",
            f"{checked['specificity_cross_fitted']:.3f} (95 % CI {low:.3f}-{high:.3f}), "
            f"{checked['specificity_cross_fitted_method']}",
        )
    table.add_row("calibration", f"sigmoid({site.slope:.3f} * logit(p) + {site.intercept:.3f}), refitted: {site.refit}")
    assumed = (
        f"{site.prevalence:.1%}, as given"
        if site.prevalence is not None
        else f"{site.prevalence_assumed:.1%} assumed (the sample's class mix); pass --prevalence P for your site's"
    )
    table.add_row("prevalence", assumed)
    console.print(table)
    for reason, paths in left_out.items():
        more = f" (and {len(paths) - 3} more)" if len(paths) > 3 else ""
        console.print(f"left out, {reason}: {len(paths)}: {'; '.join(paths[:3])}{more}", markup=False, highlight=False)
    console.print(f"wrote {output}; score with --calibration {output}", markup=False, highlight=False)
    console.print(DISCLAIMER)
