"""Result rows of a made-up site, for fitting a site calibration without scoring anything."""

from __future__ import annotations

import numpy as np

from xscan.scoring.results import Row

MODEL = "xscan-cnn-0.1.0-abcdef12"


def site_rows(normal: list[float], pneumonia: list[float], model: str = MODEL) -> list[Row]:
    """Rows of these probabilities, labelled by folder: NORMAL/ then PNEUMONIA/."""
    return [Row(f"site/NORMAL/n{i}.png", p, 0.5, model) for i, p in enumerate(normal)] + [
        Row(f"site/PNEUMONIA/p{i}.png", p, 0.5, model) for i, p in enumerate(pneumonia)
    ]


def site_sample(count: int, seed: int = 0) -> list[Row]:
    """COUNT rows of each class."""
    rng = np.random.default_rng(seed)
    # Overlapping classes, both read high: what the bundled model does at a site with another prevalence.
    normal = 1 / (1 + np.exp(-rng.normal(1.0, 1.0, count)))
    pneumonia = 1 / (1 + np.exp(-rng.normal(3.0, 1.0, count)))
    return site_rows(list(normal), list(pneumonia))
