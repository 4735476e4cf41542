"""The drift check's reference in the model card: its statistics on the validation patients, who chose nothing of it.

Both parts of validation count: the selection part chose the model's epoch, calibration and
thresholds, none of which the drift statistics' distributions depend on much, and with it the
reference has twice the films (254 normal instead of 127), so its own sampling error, which every
verdict carries, is smaller (docs/drift.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xscan.input.preprocess import preprocess_with_statistics
from xscan.model.card import DriftSection, ModelCard
from xscan.model.classes import CLASS_NAMES
from xscan.model.scorer import Scorer, load_scorer
from xscan.stats.drift import LEVEL, MIN_SCANS, STATISTICS, build_reference
from xscan.training.dataset import LabelledScan

CHUNK = 256  # scans preprocessed and scored at a time: bounded memory on a large reference part


def scan_statistics(scorer: Scorer, greys: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Every drift statistic of each decoded grey film, computed as `xscan score` computes them for its rows."""
    columns: dict[str, list[np.ndarray]] = {statistic.name: [] for statistic in STATISTICS}
    for start in range(0, len(greys), CHUNK):
        chunk = greys[start : start + CHUNK]
        inputs, films = zip(*(preprocess_with_statistics(grey, scorer.card.image_size) for grey in chunk), strict=True)
        assessment = scorer.assess(np.stack(inputs))
        columns["probability"].append(assessment.probabilities)
        if assessment.scope_scores is not None and assessment.distances is not None:
            columns["scope_score"].append(assessment.scope_scores)
            columns["feature_distance"].append(assessment.distances)
        for name in ("grey_mean", "grey_std"):
            columns[name].append(np.array([film[name] for film in films]))
    return {name: np.concatenate(parts) for name, parts in columns.items() if parts}


def drift_section(
    statistics: dict[str, np.ndarray], labels: np.ndarray, patients: np.ndarray, source: str
) -> DriftSection:
    """The card's `drift` section: per statistic, the reference bins, each class's counts in them and size."""
    return DriftSection(
        method="per statistic, the batch against the best-fitting mixture of the reference's normal and pneumonia "
        "distributions (Kolmogorov-Smirnov distance, mixture weight fitted to the batch), null simulated from the "
        "reference at its effective size (films of one patient counted as one draw, Kish), Holm's correction across "
        f"statistics at {LEVEL}; at least {MIN_SCANS} scans (xscan.stats.drift)",
        source=source,
        scans={name: int((labels == index).sum()) for index, name in enumerate(CLASS_NAMES)},
        statistics={name: build_reference(values, labels, patients) for name, values in statistics.items()},
    )


def store_reference(
    weights_dir: Path, card: ModelCard, validation: Sequence[LabelledScan], greys: Sequence[np.ndarray]
) -> None:
    """Put the drift reference of the model in WEIGHTS_DIR (as saved) into CARD: VALIDATION's films, GREYS decoded."""
    scorer = load_scorer(weights_dir, threads=0)
    labels = np.array([scan.label for scan in validation])
    patients = np.array([scan.patient_id for scan in validation])
    card.drift = drift_section(
        scan_statistics(scorer, greys),
        labels,
        patients,
        f"validation, its selection and report parts ({len(validation)} scans of {len(set(patients))} "
        f"patients, {int((labels == 0).sum())} normal), computed {dt.date.today().isoformat()}",
    )
