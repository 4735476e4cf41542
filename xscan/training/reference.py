"""The drift check's reference in the model card: its statistics on the report part of validation, the scans that chose nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from xscan.input.preprocess import film_statistics, preprocess
from xscan.model.card import CARD_FILE, ModelCard, read_card
from xscan.model.scorer import Scorer, load_scorer
from xscan.stats.drift import LEVEL, MIN_SCANS, STATISTICS, build_reference
from xscan.training.dataset import find_labelled_scans

CHUNK = 256  # scans preprocessed and scored at a time: bounded memory on a large reference part


def scan_statistics(scorer: Scorer, greys: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Every drift statistic of each decoded grey film, computed as `xscan score` computes them for its rows."""
    columns: dict[str, list[np.ndarray]] = {statistic.name: [] for statistic in STATISTICS}
    for start in range(0, len(greys), CHUNK):
        chunk = greys[start : start + CHUNK]
        assessment = scorer.assess(np.stack([preprocess(grey, scorer.card.image_size) for grey in chunk]))
        films = [film_statistics(grey) for grey in chunk]
        columns["probability"].append(assessment.probabilities)
        if assessment.scope_scores is not None and assessment.distances is not None:
            columns["scope_score"].append(assessment.scope_scores)
            columns["feature_distance"].append(assessment.distances)
        for name in ("grey_mean", "grey_std"):
            columns[name].append(np.array([film[name] for film in films]))
    return {name: np.concatenate(parts) for name, parts in columns.items() if parts}


def drift_section(statistics: dict[str, np.ndarray], labels: np.ndarray, source: str) -> dict[str, Any]:
    """The card's `drift` section: per statistic, the reference bins and each class's counts in them."""
    return {
        "method": "per statistic, the batch against the best-fitting mixture of the reference's normal and pneumonia "
                  "distributions (Kolmogorov-Smirnov distance, mixture weight fitted to the batch), null simulated from the "
                  f"reference, Holm's correction across statistics at {LEVEL}; at least {MIN_SCANS} scans (xscan.stats.drift)",
        "source": source,
        "scans": {"NORMAL": int((labels == 0).sum()), "PNEUMONIA": int((labels == 1).sum())},
        "statistics": {name: build_reference(values, labels).to_dict() for name, values in statistics.items()},
    }


def refit_reference(data_dir: Path, weights_dir: Path, command: str, labels_file: Path | None = None) -> ModelCard:
    """Compute the drift reference of the model in WEIGHTS_DIR again, on the report part of the card's own split; the model stays.

    Re-runnable: only the card's `drift` section, its `site_guidance` (which tells a site to run the
    drift check) and `training.reference_command` change.
    """
    from xscan.training.train import SITE_GUIDANCE, TrainConfig, load_images, split_for_training

    card = read_card(weights_dir)
    recipe = card.training["recipe"]
    config = replace(TrainConfig(), val_fraction=recipe["val_fraction"], report_fraction=recipe["report_fraction"], seed=recipe["seed"])
    report = split_for_training(find_labelled_scans(data_dir, labels_file), config)[2]
    scorer = load_scorer(weights_dir, threads=0)
    labels = np.array([scan.label for scan in report])
    card.drift = drift_section(scan_statistics(scorer, load_images(report)), labels,
                               f"the report part of validation ({len(report)} scans, {int((labels == 0).sum())} normal), "
                               f"computed {dt.date.today().isoformat()}")
    card.site_guidance = SITE_GUIDANCE
    card.training["reference_command"] = command
    (weights_dir / CARD_FILE).write_text(card.to_json())
    return card
