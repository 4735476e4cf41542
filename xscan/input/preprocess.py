"""The one transform from a decoded grey radiograph to model input, shared by train and score."""

from __future__ import annotations

import cv2
import numpy as np


def preprocess(grey: np.ndarray, image_size: int) -> np.ndarray:
    """Turn a 2-D uint8 grey image into a float32 (image_size, image_size, 1) array in [0, 1].

    The image is squashed to a square (the training split was squashed the same way) with
    area interpolation, then its grey levels are histogram-equalized. Equalization maps any
    monotone change of exposure, contrast or gamma to (almost) the same image, which removes
    much of what differs between scanners and years.

    Args:
        grey: The decoded film, a 2-D uint8 array.
        image_size: The model input's side, from the model card.

    Returns:
        The model input.

    Raises:
        ValueError: `grey` is not a 2-D uint8 array.
    """
    return preprocess_with_statistics(grey, image_size)[0]


def preprocess_with_statistics(grey: np.ndarray, image_size: int) -> tuple[np.ndarray, dict[str, float]]:
    """Make `preprocess`'s model input, and the film's statistics from the same squashed square.

    The statistics come from the square the model input is made of, not from the decoded film: a
    second resize of a full-resolution film would cost a noticeable share of its load time, and the
    square changes them by far less than their spread (measured in docs/throughput.md).

    Args:
        grey: The decoded film, a 2-D uint8 array.
        image_size: The model input's side, from the model card.

    Returns:
        The model input, and `film_statistics` of the square.

    Raises:
        ValueError: `grey` is not a 2-D uint8 array.
    """
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 grey image, got {grey.dtype} of shape {grey.shape}")
    square = cv2.resize(grey, (image_size, image_size), interpolation=cv2.INTER_AREA)
    equalized = cv2.equalizeHist(square)
    return (equalized.astype(np.float32) / 255.0)[..., np.newaxis], film_statistics(square)


# The side of the small square the film statistics are computed on: reduced decoding (a large JPEG
# decoded at 1/2 to 1/8 scale) and the file's own size then change them by well under their spread.
STATISTICS_SIDE = 64


def film_statistics(grey: np.ndarray) -> dict[str, float]:
    """Measure a film's grey levels before equalization.

    Equalization hides exposure and contrast from the model; these keep them, so that a change of
    X-ray unit or export pipeline shows in the drift check (xscan.reporting.drift) even where scores
    do not move.

    Args:
        grey: The film, a 2-D uint8 array, resized to STATISTICS_SIDE square first.

    Returns:
        `grey_mean` and `grey_std`: the mean and standard deviation of its levels in [0, 1].
    """
    small = (
        cv2.resize(grey, (STATISTICS_SIDE, STATISTICS_SIDE), interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0
    )
    return {"grey_mean": float(small.mean()), "grey_std": float(small.std())}
