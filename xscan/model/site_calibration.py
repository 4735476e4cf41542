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
    base_model: str  # the model id whose probabilities this recalibrates
    threshold: float  # on the site-calibrated probability
    slope: float
    intercept: float
    refit: str  # "intercept" or "slope and intercept"
    target_sensitivity: float
    counts: dict[str, int]
    at_threshold: dict[str, object]  # sensitivity and specificity on the site's scans, with 95 % Wilson intervals
    cross_checked: dict[str, object] = field(
        default_factory=dict
    )  # the same rule judged on scans that did not choose it
    prevalence: float | None = None  # the site prevalence the intercept was set to, if given
    format: str = SITE_FORMAT
    # Written since the rule carries a guarantee (issue 23); files written before load with these defaults.
    rule: str = ""  # "expected" or "confidence" (xscan.stats.conformal); empty: the old rule, highest reaching the target on the sample
    confidence: float | None = None  # with rule "confidence": the probability that the sensitivity reaches the target
    rank: int = 0  # the threshold is the rank-th lowest pneumonia score of the sample
    guarantee: str = ""  # what the rule promises, in plain words
    sensitivity_range: dict[str, object] = field(
        default_factory=dict
    )  # expected sensitivity on new scans, and its 5-95 % range
    prevalence_assumed: float | None = None  # the pneumonia share the intercept assumes: PREVALENCE, else the sample's

    def probability(self, base: np.ndarray) -> np.ndarray:
        """The site-calibrated probability of each base probability."""
        return recalibrated(base, self.slope, self.intercept)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


@dataclass(frozen=True)
class LoadedSite:
    calibration: SiteCalibration
    sha256: str

    def model_id(self) -> str:
        return f"{self.calibration.base_model}{MODEL_SEPARATOR}{self.sha256[:8]}"


def recalibrated(base: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """sigmoid(SLOPE * logit(BASE) + INTERCEPT): a site calibration applied to base probabilities."""
    return calibrated_probability(slope * clipped_logit(base) + intercept, 1.0)


def clipped_logit(p: np.ndarray) -> np.ndarray:
    """logit(P), P clipped to [PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR] first (numpy's, not scipy's: no scipy at start-up)."""
    clipped = np.clip(np.asarray(p, np.float64), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return np.log(clipped) - np.log1p(-clipped)


def load_site(path: Path, model_id: str) -> LoadedSite:
    """SITE.json for the model MODEL_ID; a file for another model, or not a site file, is refused."""
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
