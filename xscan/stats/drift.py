"""The drift test: is a batch of scans drawn from the reference's distribution, whatever its share of pneumonia?

For each statistic (the model's score, the scope check's feature distance and score, the film's
grey-level mean and spread) the reference holds its scans' counts per class in bins cut at the
pooled reference's quantiles. A batch is compared with the best-fitting mixture of the two classes'
reference distributions: the Kolmogorov-Smirnov distance between the batch's distribution and
w * pneumonia + (1 - w) * normal, minimised over the mixture weight w. So a batch that only holds
more or fewer pneumonia films than the reference (label shift) is not drift. Where the site knows
its share of pneumonia P (`xscan drift --prevalence P`), w is fixed at P instead of fitted, so a
rise of the flagged share beyond what P allows (normal films that look like pneumonia) is drift too. The distance's null
distribution is simulated (a parametric bootstrap: the reference drawn again from its own bins at
its effective size, the batch from the fitted mixture), and Holm's correction across the statistics keeps the chance
of any false alarm on a batch at ALPHA (Rabanser et al. 2019, "Failing Loudly"; Soin et al. 2022,
"CheXstray").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np

from xscan.stats.acquisition import FieldFinding
from xscan.stats.multiple import holm, holm_levels

ALPHA = 0.05  # the promised chance that a batch like the reference raises an alarm on any statistic
# Holm's family level, half of ALPHA: a card holds one reference, and the false-alarm rate of batches judged against
# one reference varies around the average over references that the simulation stands for (at ALPHA, one reference
# alarmed well above it in benchmarks/drift.py; figures in docs/drift.md, "Multiplicity").
LEVEL = ALPHA / 2
MIN_SCANS = 100  # fewer scans than this do not tell drift from chance
BINS = 64  # per statistic, cut at the pooled reference's quantiles
WEIGHTS = np.linspace(0.0, 1.0, 41)  # mixture weights (pneumonia share) the fit tries
SIMULATIONS = 2000  # null draws per statistic, batch size and fitted weight
SEED = 23  # the simulation is seeded: the same batch always gets the same verdict


@dataclass(frozen=True)
class Statistic:
    """A statistic the drift test compares with the reference, and how."""

    name: str  # the results column it is read from
    larger_only: bool  # only a shift to larger values is drift (further from the training scans)
    meaning: str


STATISTICS = (
    Statistic("probability", False, "the model's score"),
    Statistic("feature_distance", True, "the feature distance from the training scans"),
    Statistic("scope_score", True, "the scope network's out-of-scope score"),
    Statistic("grey_mean", False, "the film's mean grey level (before equalization)"),
    Statistic("grey_std", False, "the film's grey-level spread (before equalization)"),
)
BY_NAME = {statistic.name: statistic for statistic in STATISTICS}


@dataclass(frozen=True)
class Reference:
    """One statistic's reference, binned per class.

    Attributes:
        edges: The interior bin edges.
        counts: The count of reference scans per class (normal, pneumonia) per bin.
        effective: Each class's effective size (fewer than its scans where a patient has several films).
    """

    edges: np.ndarray
    counts: np.ndarray  # shape (2, len(edges) + 1)
    effective: tuple[int, int] | None = None  # None (a card from before it): the scan counts

    @property
    def sizes(self) -> np.ndarray:
        """Per class, the number of independent draws the reference stands for: what the null resamples."""
        return np.asarray(self.effective if self.effective else self.counts.sum(axis=1), np.int64)

    def to_dict(self) -> dict[str, Any]:
        """The reference as the model card stores it (JSON), edges rounded to 6 significant digits."""
        stored = {"edges": [float(f"{edge:.6g}") for edge in self.edges], "counts": self.counts.tolist()}
        return stored | ({"effective": list(self.effective)} if self.effective else {})

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> Reference:
        """The reference from what `to_dict` stored."""
        effective = tuple(int(size) for size in stored["effective"]) if "effective" in stored else None
        return cls(np.asarray(stored["edges"], np.float64), np.asarray(stored["counts"], np.int64), effective)


def effective_size(patients: np.ndarray) -> int:
    """Give the effective number of independent scans among films grouped by patient.

    A patient's films are alike (the same child, often the same unit and settings), so a class of
    395 films from 175 patients varies more than 395 independent films would: Kish's effective size
    of a cluster sample, (sum m)^2 / sum m^2 over the patients' film counts m, the cautious case in
    which a patient's films agree entirely. Simulating the reference at its film count made the
    test alarm about twice as often as promised on batches of new patients (benchmarks/drift.py).

    Args:
        patients: Each film's patient.

    Returns:
        The effective size.
    """
    films = np.unique(np.asarray(patients), return_counts=True)[1].astype(np.float64)
    return int(films.sum() ** 2 / (films**2).sum())


def build_reference(values: np.ndarray, labels: np.ndarray, patients: np.ndarray | None = None) -> Reference:
    """Build the reference of one statistic from labelled scans.

    Args:
        values: The statistic per scan.
        labels: Per scan, 0 normal or 1 pneumonia.
        patients: Each scan's patient (default: one each).

    Returns:
        The reference.
    """
    values, labels = np.asarray(values, np.float64), np.asarray(labels)
    # Rounded as the card stores them, so that the counts are those of the stored edges.
    edges = np.unique([float(f"{edge:.6g}") for edge in np.quantile(values, np.arange(1, BINS) / BINS)])
    counts = np.stack(
        [np.bincount(np.searchsorted(edges, values[labels == c], "right"), minlength=len(edges) + 1) for c in (0, 1)]
    )
    effective = None if patients is None else tuple(effective_size(np.asarray(patients)[labels == c]) for c in (0, 1))
    return Reference(edges, counts, effective)


@dataclass(frozen=True)
class Finding:
    """One statistic's test on a batch."""

    statistic: str
    scans: int
    distance: float  # KS distance of the batch from the best-fitting mixture of the reference's classes
    critical: float  # the distance at which this statistic alarms at its Holm level
    p_value: float
    pneumonia_share: float  # the fitted mixture weight
    median: float  # the batch's median
    reference_median: float  # the fitted mixture's median
    drifted: bool = False

    def describe(self) -> str:
        """One line: the statistic, its distance, where it alarms, and which way the batch moved."""
        direction = "higher" if self.median > self.reference_median else "lower"
        return (
            f"{BY_NAME[self.statistic].meaning} ({self.statistic}): distance {self.distance:.3f} from the reference, "
            f"alarm above {self.critical:.3f} (p = {self.p_value:.4f}); median {self.median:.4g}, {direction} than the "
            f"reference's {self.reference_median:.4g}"
        )


def binned_cdf(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Give the empirical distribution function of values at each edge.

    Args:
        values: The values.
        edges: The bin edges.

    Returns:
        The share of values at or below each edge.
    """
    counts = np.bincount(np.searchsorted(edges, values, "right"), minlength=len(edges) + 1)
    return np.cumsum(counts)[:-1] / len(values)


def mixture_distance(
    batch_cdf: np.ndarray,
    normal_cdf: np.ndarray,
    pneumonia_cdf: np.ndarray,
    larger_only: bool,
    weights: np.ndarray = WEIGHTS,
) -> tuple[np.ndarray, np.ndarray]:
    """Measure each batch's distance from the best mixture of the two class distributions.

    Arrays hold distribution functions at the bin edges, batches along the first axis.

    Args:
        batch_cdf: The batches' distribution functions.
        normal_cdf: The normal class's distribution function: one, or one per batch.
        pneumonia_cdf: The pneumonia class's, likewise.
        larger_only: Only a batch shifted to larger values is far.
        weights: The pneumonia shares tried (one: the mixture is fixed).

    Returns:
        Per batch, the distance from the best mixture and that mixture's weight.
    """
    mixture = (
        weights[None, :, None] * pneumonia_cdf[..., None, :] + (1 - weights[None, :, None]) * normal_cdf[..., None, :]
    )
    gap = mixture - batch_cdf[:, None, :]  # positive where the batch has fewer small values than the mixture
    distances = (gap if larger_only else np.abs(gap)).max(axis=2).clip(min=0.0)
    best = distances.argmin(axis=1)
    return distances[np.arange(len(distances)), best], weights[best]


def null_distances(
    reference: Reference, scans: int, weight: float, larger_only: bool, fixed: bool = False
) -> np.ndarray:
    """Simulate the distances of batches drawn from the reference's mixture (cached).

    Args:
        reference: The statistic's reference.
        scans: The batch size.
        weight: The mixture's pneumonia share the batches are drawn at.
        larger_only: Only a shift to larger values counts.
        fixed: Measure from the mixture at the weight itself, not from the best-fitting one (`--prevalence`).

    Returns:
        The simulated distances, sorted.
    """
    return _null(
        tuple(reference.counts.ravel().tolist()),
        tuple(reference.sizes.tolist()),
        scans,
        round(weight, 6),
        larger_only,
        fixed,
    )


@lru_cache(maxsize=256)
def _null(
    counts: tuple[int, ...], sizes_key: tuple[int, ...], scans: int, weight: float, larger_only: bool, fixed: bool
) -> np.ndarray:
    rng = np.random.default_rng([SEED, scans, int(round(weight * 1000))])
    per_class = np.asarray(counts, np.int64).reshape(2, -1)
    sizes = np.asarray(sizes_key, np.int64)
    shares = per_class / per_class.sum(axis=1)[:, None]
    truth = weight * shares[1] + (1 - weight) * shares[0]
    simulated = []
    for chunk in np.array_split(np.arange(SIMULATIONS), 8):  # bounded memory: (chunk, weights, bins) at a time
        draws = len(chunk)
        normal = np.cumsum(rng.multinomial(sizes[0], shares[0], draws), axis=1)[:, :-1] / sizes[0]
        pneumonia = np.cumsum(rng.multinomial(sizes[1], shares[1], draws), axis=1)[:, :-1] / sizes[1]
        batch = np.cumsum(rng.multinomial(scans, truth, draws), axis=1)[:, :-1] / scans
        tried = np.array([weight]) if fixed else WEIGHTS
        simulated.append(mixture_distance(batch, normal, pneumonia, larger_only, tried)[0])
    return np.sort(np.concatenate(simulated))


def check_statistic(
    name: str, values: np.ndarray, reference: Reference, level: float = LEVEL, prevalence: float | None = None
) -> Finding:
    """Test one statistic: its distance from its reference, its p-value from the simulated null.

    Args:
        name: The statistic's name.
        values: Its values in the batch.
        reference: Its reference.
        level: The level it is tested at.
        prevalence: The batch's pneumonia share, when known: the mixture is fixed there instead of fitted.

    Returns:
        The finding, drifted when the p-value is at most the level.
    """
    values = np.asarray(values, np.float64)
    tried = WEIGHTS if prevalence is None else np.array([prevalence])
    larger_only = BY_NAME[name].larger_only
    sizes = reference.counts.sum(axis=1)
    normal_cdf, pneumonia_cdf = (np.cumsum(reference.counts[c])[:-1] / sizes[c] for c in (0, 1))
    distances, weights = mixture_distance(
        binned_cdf(values, reference.edges)[None, :], normal_cdf, pneumonia_cdf, larger_only, tried
    )
    distance, weight = float(distances[0]), float(weights[0])
    null = null_distances(reference, len(values), weight, larger_only, prevalence is not None)
    exceed = len(null) - np.searchsorted(null, distance - 1e-12)  # simulated distances at least as large
    p_value = (1 + exceed) / (1 + len(null))
    mixture_cdf = weight * pneumonia_cdf + (1 - weight) * normal_cdf
    reference_median = float(reference.edges[min(int(np.searchsorted(mixture_cdf, 0.5)), len(reference.edges) - 1)])
    return Finding(
        name,
        len(values),
        distance,
        float(np.quantile(null, 1 - level)),
        p_value,
        weight,
        float(np.median(values)),
        reference_median,
        p_value <= level,
    )


def check_batch(
    values: dict[str, np.ndarray],
    references: dict[str, Reference],
    alpha: float = LEVEL,
    prevalence: float | None = None,
) -> list[Finding]:
    """Test every statistic that has a reference with Holm's correction.

    Args:
        values: The batch's values per statistic.
        references: The references per statistic.
        alpha: Holm's family level.
        prevalence: When given, fixes each statistic's class mixture at that pneumonia share instead of fitting it.

    Returns:
        The findings, in STATISTICS order.
    """
    names = [statistic.name for statistic in STATISTICS if statistic.name in values and statistic.name in references]
    findings = [check_statistic(name, values[name], references[name], prevalence=prevalence) for name in names]
    p_values = [finding.p_value for finding in findings]
    return [
        replace(
            finding,
            drifted=drifted,
            critical=float(
                np.quantile(
                    null_distances(
                        references[finding.statistic],
                        finding.scans,
                        finding.pneumonia_share,
                        BY_NAME[finding.statistic].larger_only,
                        prevalence is not None,
                    ),
                    1 - finding_level,
                )
            ),
        )
        for finding, drifted, finding_level in zip(
            findings, holm(p_values, alpha), holm_levels(p_values, alpha), strict=True
        )
    ]


@dataclass(frozen=True)
class DriftVerdict:
    """Whether a batch of scans drifted from the model card's reference, statistic by statistic."""

    scans: int
    findings: list[Finding]
    left_out: list[str]  # statistics (and header fields) not tested, each with why
    headers: list[FieldFinding] = field(default_factory=list)  # DICOM header fields against a baseline run (--baseline)
    prevalence: float | None = None  # the site's pneumonia share the mixture was fixed at (--prevalence); None: fitted

    @property
    def drifted(self) -> bool:
        """Whether any statistic or DICOM header field drifted."""
        return any(finding.drifted for finding in self.findings) or any(finding.drifted for finding in self.headers)

    def summary(self) -> str:
        """One line: the verdict and what it rests on."""
        headers = f" and {len(self.headers)} DICOM header fields like the baseline's" if self.headers else ""
        if not self.drifted:
            return (
                f"drift: none found in {self.scans} scans ({len(self.findings)} statistics like the model card's "
                "reference"
                f"{headers}{self._mixture()}, false alarms <= {ALPHA:.0%})"
            )
        drifted = ", ".join(
            [finding.statistic for finding in self.findings if finding.drifted]
            + [f"DICOM {finding.field} (against the baseline)" for finding in self.headers if finding.drifted]
        )
        return (
            f"drift: these {self.scans} scans are unlike the model card's reference{self._mixture()} in {drifted}: "
            "the card's figures and any site calibration may not hold; check the source (X-ray unit, export, ward) "
            "and recalibrate with xscan calibrate"
        )

    def _mixture(self) -> str:
        return "" if self.prevalence is None else f" at the stated {self.prevalence:.1%} pneumonia"

    def as_dict(self) -> dict[str, Any]:
        """The verdict as JSON-ready values, with its summary line."""
        return {
            "drifted": self.drifted,
            "scans": self.scans,
            "alpha": ALPHA,
            "summary": self.summary(),
            "statistics": [
                {**asdict(finding), "drifted": bool(finding.drifted), "p_value": float(finding.p_value)}
                for finding in self.findings
            ],
            "headers": [{**asdict(finding), "drifted": bool(finding.drifted)} for finding in self.headers],
            "left_out": self.left_out,
            "prevalence": self.prevalence,
        }


def judge(
    values: dict[str, np.ndarray],
    stored: Mapping[str, Reference],
    scans: int,
    level: float = LEVEL,
    prevalence: float | None = None,
) -> DriftVerdict:
    """Judge a batch of scored scans against a card's drift references.

    A statistic with fewer than MIN_SCANS values (rows scored without the scope check, or with a
    site calibration for the model's score) is left out and named.

    Args:
        values: Per statistic, the values of the scans that have it.
        stored: A card's drift references by statistic (`card.drift.statistics`).
        scans: How many scans were scored.
        level: Holm's family level (less where another family of tests shares the promise).
        prevalence: The site's pneumonia share: fixes each statistic's class mixture there instead of
            fitting it (see the module's docstring).

    Returns:
        The verdict.
    """
    references = {name: reference for name, reference in stored.items() if name in BY_NAME}
    left_out = [f"{name}: no reference in the model card" for name in values if name not in references]
    left_out += [
        f"{name}: {len(values[name])} values, fewer than {MIN_SCANS}"
        for name in references
        if name in values and len(values[name]) < MIN_SCANS
    ]
    tested = {name: column for name, column in values.items() if name in references and len(column) >= MIN_SCANS}
    return DriftVerdict(scans, check_batch(tested, references, level, prevalence), left_out, prevalence=prevalence)
