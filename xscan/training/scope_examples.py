"""Out-of-scope examples made from training films for the scope check: films rendered wrongly, and things no film."""

from __future__ import annotations

import cv2
import numpy as np

from xscan.model.scope import ScopeConfig


def rotated_or_inverted(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Render a chest film wrongly: turned by 90, 180 or 270 degrees, upside down, or with inverted grey levels.

    Args:
        grey: The film, uint8 grey.
        rng: The random generator that picks the change.

    Returns:
        The changed film.
    """
    kind = int(rng.integers(0, 5))
    if kind == 0:
        return cv2.rotate(grey, cv2.ROTATE_90_CLOCKWISE)
    if kind == 1:
        return cv2.rotate(grey, cv2.ROTATE_90_COUNTERCLOCKWISE)
    if kind == 2:
        return cv2.rotate(grey, cv2.ROTATE_180)
    if kind == 3:
        return np.ascontiguousarray(grey[::-1])
    inverted = 255 - grey
    return cv2.rotate(inverted, cv2.ROTATE_180) if rng.random() < 0.3 else inverted


def not_a_radiograph(grey: np.ndarray, rng: np.random.Generator, crop_side: tuple[float, float]) -> np.ndarray:
    """Make something a nightly export holds that is no chest film.

    Args:
        grey: A film, cropped for one kind of example.
        rng: The random generator that picks the kind and its details.
        crop_side: The range of a crop's side, as a share of the film's.

    Returns:
        A small crop, noise, a flat or gradient image, shapes or text, uint8 grey.
    """
    kind = int(rng.integers(0, 6))
    size = int(rng.integers(160, 400))
    if kind == 0:
        h, w = grey.shape
        side = rng.uniform(*crop_side)
        ch, cw = max(8, int(h * side)), max(8, int(w * side))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        return np.ascontiguousarray(grey[y : y + ch, x : x + cw])
    if kind == 1:
        noise = rng.normal(128, rng.uniform(10, 80), (size, size))
        blur = rng.choice([0, 1, 3, 9])
        noise = cv2.GaussianBlur(noise, (0, 0), blur) if blur else noise
        return np.clip(noise, 0, 255).astype(np.uint8)
    if kind == 2:
        flat = np.full((size, size), rng.integers(0, 256), np.uint8)
        return np.clip(flat + rng.normal(0, rng.uniform(0, 3), flat.shape), 0, 255).astype(np.uint8)
    if kind == 3:
        ramp = np.linspace(rng.uniform(0, 128), rng.uniform(128, 255), size)
        image = np.add.outer(ramp * rng.uniform(0, 1), ramp * rng.uniform(0, 1))
        return cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    canvas = np.full((size, size), rng.integers(0, 256), np.uint8)
    for _ in range(int(rng.integers(3, 25))):
        colour = int(rng.integers(0, 256))
        centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        if kind == 4:
            cv2.circle(canvas, centre, int(rng.integers(3, size // 3)), colour, -1 if rng.random() < 0.5 else 2)
            cv2.rectangle(
                canvas,
                centre,
                (int(rng.integers(0, size)), int(rng.integers(0, size))),
                colour,
                -1 if rng.random() < 0.5 else 2,
            )
        else:
            text = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(3, 12))))
            cv2.putText(
                canvas, text, centre, cv2.FONT_HERSHEY_SIMPLEX, rng.uniform(0.4, 1.5), colour, int(rng.integers(1, 3))
            )
    return canvas


def synthetic_out_of_scope(
    greys: list[np.ndarray], config: ScopeConfig, seed: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Make the synthetic out-of-scope examples from training films.

    Args:
        greys: Training films, uint8 grey.
        config: The scope check's settings: examples per kind and the crop sides.
        seed: The random generator's seed.

    Returns:
        `synthetic_per_kind` rotated-or-inverted (class 2) and not-a-radiograph (class 3) examples,
        and their class indices.
    """
    rng = np.random.default_rng(seed)
    made: list[np.ndarray] = []
    kinds: list[int] = []
    for kind in (2, 3):
        for index in rng.integers(0, len(greys), config.synthetic_per_kind):
            grey = greys[int(index)]
            made.append(rotated_or_inverted(grey, rng) if kind == 2 else not_a_radiograph(grey, rng, config.crop_side))
            kinds.append(kind)
    return made, np.array(kinds)
