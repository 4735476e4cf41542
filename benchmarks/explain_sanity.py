"""Adebayo et al. (2018)'s model-randomisation check of xscan's Grad-CAM on real scans.

Randomises the logit layers and then, in cascade, the last conv stages of every member, and
prints the mean Spearman rank correlation between the trained model's maps and the randomised
one's: over the signed 5 x 5 cell maps, and over the maps as drawn (positive part, on the
160-pixel input) for scans where the trained map has any positive cell.

    python benchmarks/explain_sanity.py [--scans 40]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from xscan.explain.gradcam import GradCam, randomized_copy
from xscan.explain.overlay import heat_on_scan
from xscan.model.card import model_config_from_card
from xscan.model.scorer import load_scorer
from xscan.scoring.pipeline import load_scan

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def scans(count: int) -> np.ndarray:
    """COUNT real scans, half of each class, spread over the two sets the model meets.

    The two sets are the training split and full resolution.
    """
    paths = []
    for label in ("NORMAL", "PNEUMONIA"):
        for root in (DATA / "chest_xray" / "train", DATA / "fullres"):
            files = sorted((root / label).iterdir())
            paths += files[:: max(1, len(files) // (count // 4))][: count // 4]
    return np.stack([load_scan(path, 160).model_input for path in paths])


def correlations(trained: np.ndarray, random: np.ndarray, grid, size: int) -> tuple[float, float, int]:
    signed = [spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(trained, random, strict=True)]
    shown = []
    for a, b in zip(trained, random, strict=True):
        if a.max() <= 0:
            continue  # nothing is drawn for this scan: no ranking to compare
        heat_a, heat_b = (heat_on_scan(np.maximum(m, 0), grid, size, size, size) for m in (a, b))
        shown.append(0.0 if heat_b.max() <= 0 else spearmanr(heat_a.ravel(), heat_b.ravel()).statistic)
    return float(np.nanmean(signed)), float(np.mean(shown)) if shown else float("nan"), len(shown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=40)
    args = parser.parse_args()
    scorer = load_scorer()
    config = model_config_from_card(scorer.card)
    batch = scans(args.scans)
    trained_cam = GradCam(scorer.network, config)
    trained = trained_cam.cells(batch)
    print(f"{len(batch)} scans; model {scorer.card.model_id}")
    print("| randomised | mean Spearman, signed cells | mean Spearman, drawn maps (scans) |")
    print("| --- | --- | --- |")
    for stages in range(0, 3):
        random = GradCam(randomized_copy(scorer.network, config, stages=stages, seed=0), config).cells(batch)
        signed, shown, count = correlations(trained, random, trained_cam.grid, config.image_size)
        what = "logit layers" + (f" + last {stages} stage(s)" if stages else "")
        print(f"| {what} | {signed:.3f} | {shown:.3f} ({count}) |")


if __name__ == "__main__":
    main()
