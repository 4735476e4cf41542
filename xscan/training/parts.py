"""The three patient-disjoint parts of a training folder (train, select, report), decoded and preprocessed."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from xscan.errors import TrainingDataError
from xscan.input.decode import decode
from xscan.input.preprocess import preprocess
from xscan.training.config import TrainConfig
from xscan.training.dataset import LabelledScan, split_by_patient


class Split(NamedTuple):
    """Three patient-disjoint parts: TRAIN fits, SELECT chooses epoch, calibration, thresholds; REPORT only reports."""

    train: list[LabelledScan]
    select: list[LabelledScan]
    report: list[LabelledScan]


@dataclass(frozen=True)
class TrainingParts:
    """The decoded and preprocessed scans of the three parts, as fitting, calibration and the scope check need them."""

    train_greys: list[np.ndarray]
    x_train: np.ndarray
    x_select: np.ndarray
    x_report: np.ndarray
    report_greys: list[np.ndarray]
    select_greys: list[np.ndarray]  # with report_greys, the drift reference's films: kept so it decodes none again


def split_for_training(scans: list[LabelledScan], config: TrainConfig) -> Split:
    """SCANS in three patient-disjoint parts, by CONFIG's fractions and seed.

    SELECT chooses the epoch, the calibration and both thresholds; REPORT chooses nothing and gives
    every figure in the card, so none holds by construction.

    Args:
        scans: every labelled scan of the folder.
        config: the recipe (its `val_fraction`, `report_fraction` and `seed`).

    Returns:
        The split.

    Raises:
        TrainingDataError: a part would lack one of the classes.
    """
    train_scans, held_out = split_by_patient(scans, config.val_fraction, config.seed)
    select_scans, report_scans = split_by_patient(held_out, config.report_fraction, config.seed + 1)
    for name, part in (("training", train_scans), ("selection", select_scans), ("report", report_scans)):
        if len({s.label for s in part}) < 2:
            raise TrainingDataError(f"too few patients to make a {name} part with both classes")
    return Split(train_scans, select_scans, report_scans)


def load_images(scans: Iterable[LabelledScan]) -> list[np.ndarray]:
    """Every scan decoded to grey, in parallel (OpenCV releases the GIL).

    Args:
        scans: the scans to decode.

    Returns:
        Their grey uint8 arrays, in order.
    """
    with ThreadPoolExecutor() as pool:
        return list(pool.map(lambda scan: decode(scan.path), scans))


def preprocess_all(greys: Iterable[np.ndarray], image_size: int) -> np.ndarray:
    """GREYS as one batch of model inputs (the one preprocessing scoring uses).

    Args:
        greys: decoded grey films.
        image_size: the model input's side.

    Returns:
        An array of shape (films, image_size, image_size, 1).
    """
    return np.stack([preprocess(grey, image_size) for grey in greys])


def load_parts(split: Split, image_size: int) -> TrainingParts:
    """SPLIT's scans decoded and preprocessed for a model of IMAGE_SIZE.

    Args:
        split: the three parts.
        image_size: the model input's side.

    Returns:
        The parts' model inputs, with every part's greys kept for the scope check, shifts and drift reference.
    """
    train_greys, select_greys, report_greys = (load_images(part) for part in split)
    return TrainingParts(
        train_greys,
        preprocess_all(train_greys, image_size),
        preprocess_all(select_greys, image_size),
        preprocess_all(report_greys, image_size),
        report_greys,
        select_greys,
    )


def labels_of(scans: list[LabelledScan]) -> np.ndarray:
    """The labels (0 normal, 1 pneumonia) of SCANS as an array."""
    return np.array([scan.label for scan in scans])
