"""The site calibration file (SITE.json): its format, loading it for one model, and applying it to probabilities.

`xscan calibrate` (xscan.site.calibrate) writes it; scoring maps each base probability p to
sigmoid(slope * logit(p) + intercept) and compares that with the site threshold.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from xscan.errors import UsageError
from xscan.model.card import calibrated_probability

PROBABILITY_FLOOR = 1e-6  # results carry six decimals: 0 and 1 are clipped before the logit
SITE_FORMAT = "xscan-site-calibration/1"
MODEL_SEPARATOR = "+"  # model column of site-calibrated rows: <model id>+<first 8 hex of SITE.json's sha256>


class SiteCalibrationError(UsageError, ValueError):
    """Rows or a SITE.json that cannot give or apply a site calibration; the message says why."""


@dataclass(frozen=True)
class SiteCalibration:
    """A site's calibration and threshold as SITE.json holds them, and what was measured when it was made."""

    base_model: str  # the model id whose probabilities this recalibrates
    threshold: float  # on the site-calibrated probability
    slope: float
    intercept: float
    refit: str  # "intercept" or "slope and intercept"
    target_sensitivity: float
    counts: dict[str, int]
    at_threshold: dict[str, object]  # sensitivity and specificity on the site's scans, with 95 % Wilson intervals
    # The same rule judged on scans that did not choose it.
    cross_checked: dict[str, object] = field(default_factory=dict)
    prevalence: float | None = None  # the site prevalence the intercept was set to, if given
    format: str = SITE_FORMAT
    # Files written before the rule carried a guarantee lack the fields below and load with these defaults.
    # "expected" or "confidence" (xscan.stats.conformal); empty: the old rule, the highest threshold reaching the
    # target on the sample.
    rule: str = ""
    confidence: float | None = None  # with rule "confidence": the probability that the sensitivity reaches the target
    rank: int = 0  # the threshold is the rank-th lowest pneumonia score of the sample
    guarantee: str = ""  # what the rule promises, in plain words
    # Expected sensitivity on new scans, and its 5-95 % range.
    sensitivity_range: dict[str, object] = field(default_factory=dict)
    prevalence_assumed: float | None = None  # the pneumonia share the intercept assumes: PREVALENCE, else the sample's

    def probability(self, base: np.ndarray) -> np.ndarray:
        """Apply the calibration.

        Args:
            base: Base probabilities, as the model gives them.

        Returns:
            The site-calibrated probability of each.
        """
        return recalibrated(base, self.slope, self.intercept)

    def to_json(self) -> str:
        """Write the calibration as SITE.json's text.

        Returns:
            Indented JSON, ending with a line break.
        """
        return json.dumps(asdict(self), indent=2) + "\n"


@dataclass(frozen=True)
class LoadedSite:
    """A site calibration read from its file, and the file's sha256."""

    calibration: SiteCalibration
    sha256: str

    def model_id(self) -> str:
        """Name the model of site-calibrated rows.

        Returns:
            The base model's id, MODEL_SEPARATOR and the first 8 hex digits of the file's sha256.
        """
        return f"{self.calibration.base_model}{MODEL_SEPARATOR}{self.sha256[:8]}"


def recalibrated(base: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Apply a site calibration to base probabilities: sigmoid(slope * logit(base) + intercept).

    Args:
        base: Base probabilities.
        slope: The calibration's slope.
        intercept: The calibration's intercept.

    Returns:
        The recalibrated probabilities.
    """
    return calibrated_probability(slope * clipped_logit(base) + intercept, 1.0)


def clipped_logit(p: np.ndarray) -> np.ndarray:
    """Take the logit of probabilities clipped to [PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR] first.

    numpy's, not scipy's: scipy is not imported at start-up.

    Args:
        p: Probabilities.

    Returns:
        log(p / (1 - p)) of the clipped values, as float64.
    """
    clipped = np.clip(np.asarray(p, np.float64), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return np.log(clipped) - np.log1p(-clipped)


def load_site(path: Path, model_id: str) -> LoadedSite:
    """Load a SITE.json for one model.

    Args:
        path: The site calibration file.
        model_id: The id of the model that scores.

    Returns:
        The calibration and the file's sha256.

    Raises:
        SiteCalibrationError: The file cannot be read, is not a site calibration file, or was made
            for another model.
    """
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except OSError as error:
        raise SiteCalibrationError(f"cannot read {path}: {error.strerror or error}") from None
    except ValueError as error:
        raise SiteCalibrationError(f"{path} is not a site calibration file: {error}") from None
    if not isinstance(data, dict) or data.get("format") != SITE_FORMAT:
        raise SiteCalibrationError(f"{path} is not a site calibration file (written by xscan calibrate)")
    try:
        site = SiteCalibration(**data)
    except TypeError as error:
        raise SiteCalibrationError(f"{path} is not a valid site calibration file: {error}") from None
    if site.base_model != model_id:
        raise SiteCalibrationError(
            f"{path} was made for model {site.base_model}, not {model_id}: calibrate again with this model"
        )
    return LoadedSite(site, hashlib.sha256(raw).hexdigest())
