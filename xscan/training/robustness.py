"""Acquisition shifts that separate hospitals and years, and the model's scores under each."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from xscan.model.card import ShiftFigures
from xscan.stats.metrics import binary_metrics
from xscan.training.fit import logits
from xscan.training.parts import preprocess_all

if TYPE_CHECKING:
    from xscan.training.operating_point import OperatingPoint

Shift = Callable[[np.ndarray], np.ndarray]  # uint8 grey -> uint8 grey


def _contrast(factor: float) -> Shift:
    def shift(grey: np.ndarray) -> np.ndarray:
        mean = grey.mean()
        return np.clip((grey.astype(np.float32) - mean) * factor + mean, 0, 255).astype(np.uint8)

    return shift


def _gamma(gamma: float) -> Shift:
    table = np.clip(((np.arange(256) / 255.0) ** gamma) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return lambda grey: cv2.LUT(grey, table)


def _brightness(offset: int) -> Shift:
    return lambda grey: np.clip(grey.astype(np.int16) + offset, 0, 255).astype(np.uint8)


def _blur(sigma: float) -> Shift:
    return lambda grey: cv2.GaussianBlur(grey, (0, 0), sigma)


def _noise(std: float) -> Shift:
    def shift(grey: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(grey.size)  # fixed per image size: reproducible
        return np.clip(grey + rng.normal(0, std, grey.shape), 0, 255).astype(np.uint8)

    return shift


def _jpeg(quality: int) -> Shift:
    def shift(grey: np.ndarray) -> np.ndarray:
        ok, encoded = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)

    return shift


def _zoom(scale: float) -> Shift:
    """Scale about the centre: > 1 crops in (tighter collimation), < 1 adds a black border."""

    def shift(grey: np.ndarray) -> np.ndarray:
        h, w = grey.shape
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 0, scale)
        return cv2.warpAffine(grey, matrix, (w, h), flags=cv2.INTER_AREA, borderValue=0)

    return shift


def _border(fraction: float) -> Shift:
    def shift(grey: np.ndarray) -> np.ndarray:
        h, w = grey.shape
        pad_y, pad_x = int(h * fraction), int(w * fraction)
        padded = cv2.copyMakeBorder(grey, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_CONSTANT, value=0)
        return cv2.resize(padded, (w, h), interpolation=cv2.INTER_AREA)

    return shift


def _rotate(degrees: float) -> Shift:
    def shift(grey: np.ndarray) -> np.ndarray:
        h, w = grey.shape
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
        return cv2.warpAffine(grey, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)

    return shift


SHIFTS: dict[str, Shift] = {
    "none": lambda grey: grey,
    "contrast x0.6": _contrast(0.6),
    "contrast x1.4": _contrast(1.4),
    "gamma 0.7": _gamma(0.7),
    "gamma 1.5": _gamma(1.5),
    "brightness +40": _brightness(40),
    "brightness -40": _brightness(-40),
    "blur sigma 2": _blur(2.0),
    "noise std 12": _noise(12.0),
    "jpeg quality 20": _jpeg(20),
    "zoom in 1.15": _zoom(1.15),
    "zoom out 0.85": _zoom(0.85),
    "black border 10%": _border(0.10),
    "rotate 7 deg": _rotate(7.0),
}


def evaluate_shifts(
    network: Any,
    greys: list[np.ndarray],
    labels: np.ndarray,
    image_size: int,
    operating_point: OperatingPoint,
    shifts: dict[str, Shift] = SHIFTS,
) -> list[ShiftFigures]:
    """AUC, sensitivity and specificity of NETWORK on GREYS after each acquisition shift, at the operating point.

    Args:
        network: the Keras ensemble.
        greys: the report part's decoded films.
        labels: their labels.
        image_size: the model input's side.
        operating_point: the card's calibration and threshold.
        shifts: the shifts by name.

    Returns:
        One row of figures per shift, in SHIFTS' order.
    """
    rows = []
    for name, shift in shifts.items():
        x = preprocess_all((shift(grey) for grey in greys), image_size)
        metrics = binary_metrics(labels, operating_point.probability(logits(network, x)), operating_point.threshold)
        rows.append(ShiftFigures(name, *(metrics[key] for key in ("auc", "sensitivity", "specificity", "accuracy"))))
    return rows
