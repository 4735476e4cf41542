"""What the audit holds the results to: a promised sensitivity and specificity, and where each was stated.

In this order, figure by figure: the options; a site calibration's stated figures (its guaranteed
sensitivity, the lower bound of its cross-fitted specificity: xscan.site.calibrate); the model
card's, measured on the report part of validation at the shipped threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xscan.errors import UsageError
from xscan.model.card import ModelCard
from xscan.model.site_calibration import SiteCalibration, load_site

# The promised figures; PPV is shown, never promised (it moves with prevalence).
FIGURES = ("sensitivity", "specificity")


@dataclass(frozen=True)
class Promised:
    """One promised figure and where it was stated."""

    figure: str  # "sensitivity" or "specificity"
    value: float
    source: str  # where it was stated, in words

    def describe(self) -> str:
        """The promise in words: the figure, its value and its source."""
        return f"{self.figure} >= {self.value:.3f} ({self.source})"


def promises(
    card: ModelCard,
    sensitivity: float | None = None,
    specificity: float | None = None,
    calibration: Path | None = None,
) -> tuple[Promised, Promised]:
    """Find the promised sensitivity and specificity: each from the options, else the site calibration, else the card.

    Args:
        card: The model card.
        sensitivity: The promised sensitivity, over any other.
        specificity: The promised specificity, over any other.
        calibration: A SITE.json whose stated figures are the promise (after the options).

    Returns:
        The promised sensitivity and specificity.

    Raises:
        SiteCalibrationError: The calibration is not a site calibration of the card's model.
        UsageError: A promised figure is not in (0, 1], or the card holds no figures for its report part.
    """
    given = {"sensitivity": sensitivity, "specificity": specificity}
    site = load_site(calibration, card.model_id).calibration if calibration is not None else None
    chosen = []
    for figure in FIGURES:
        if given[figure] is not None:
            if not 0.0 < float(given[figure]) <= 1.0:
                raise UsageError(f"--promise-{figure} is a share above 0 and at most 1, not {given[figure]}")
            chosen.append(Promised(figure, float(given[figure]), f"--promise-{figure}"))
        elif site is not None and (stated := _site_figure(site, figure)) is not None:
            chosen.append(Promised(figure, stated[0], f"site calibration {calibration}: {stated[1]}"))
        else:
            chosen.append(_card_figure(card, figure))
    return chosen[0], chosen[1]


def _site_figure(site: SiteCalibration, figure: str) -> tuple[float, str] | None:
    if figure == "sensitivity":
        return site.target_sensitivity, "its guaranteed sensitivity"
    checked = site.cross_checked
    for name, words in (
        ("specificity_cross_fitted_interval", "its cross-fitted specificity's 95 % lower bound"),
        ("specificity_interval", "its specificity's 95 % lower bound (not cross-fitted: too few pneumonia scans)"),
    ):
        interval = checked.get(name)
        if isinstance(interval, list) and interval and interval[0] is not None:
            return float(interval[0]), words
    return None


def _card_figure(card: ModelCard, figure: str) -> Promised:
    value = getattr(card.validation, figure, None) if card.validation else None
    if value is None:
        raise UsageError(f"the model card of {card.model_id} states no {figure}: give --promise-{figure}")
    where = f"model card of {card.model_id}: the report part of validation at threshold {card.threshold:.4f}"
    return Promised(figure, float(value), where)
