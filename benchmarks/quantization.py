"""Quantization check: the shipped (float) LiteRT file against a dynamic-range quantized conversion of the same network.

Scores the report part of the card's own split (patients that chose nothing) and the 120
full-resolution films (reduced decoding, as `xscan score` reads them) with both, and prints what
issue 25 asks of a quantized model before it may ship: report-part AUC change <= 0.002, labels
agreeing on >= 99.5 % of the report part and of the full-resolution films, scope verdicts agreeing
on >= 99.5 %; and the network's CPU time an image (one thread, batches of 16, medians of alternating rounds).

    PYTHONPATH=$PWD python benchmarks/quantization.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO.parent / "shared" / "data" / "chest_xray" / "train"
FULLRES = REPO.parent / "shared" / "data" / "fullres"


def report_part(card) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and labels of the card's report part."""
    from xscan.training.config import card_split
    from xscan.training.dataset import find_labelled_scans
    from xscan.training.parts import load_images, preprocess_all, split_for_training

    config = card_split(card)
    _, _, report = split_for_training(find_labelled_scans(TRAIN), config)
    return preprocess_all(load_images(report), card.image_size), np.array([scan.label for scan in report])


def fullres_inputs(card) -> np.ndarray:
    from xscan.scoring.pipeline import load_in_order

    paths = sorted(p for p in FULLRES.rglob("*") if p.is_file())
    return np.stack([loaded.model_input for loaded in load_in_order(paths, card.image_size, 2, 64)])


def cpu_ms_per_image(scorers: dict, rounds: int = 12) -> dict[str, float]:
    """The network alone, CPU time an image (process time: other jobs on a shared machine do not count), batches of 16.

    The variants alternate round by round; medians of ROUNDS.
    """
    batch = np.random.default_rng(0).random((16, 160, 160, 1), dtype=np.float32)
    times: dict[str, list[float]] = {name: [] for name in scorers}
    for scorer in scorers.values():
        scorer.assess(batch)  # starts the interpreter
    for _ in range(rounds):
        for name, scorer in scorers.items():
            started = time.process_time()
            for _ in range(5):
                scorer._network.run(batch)
            times[name].append((time.process_time() - started) / 80 * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=REPO / "weights")
    args = parser.parse_args()
    from sklearn.metrics import roc_auc_score

    from xscan.model.bundle import convert, scoring_model
    from xscan.model.card import load_network
    from xscan.model.scope import load_scope_network
    from xscan.model.scorer import load_scorer

    shipped = load_scorer(args.weights)
    card = shipped.card
    model, _ = scoring_model(load_network(args.weights, card), card, load_scope_network(args.weights, card))
    variants = {
        "float (shipped)": shipped,
        "dynamic-range": replace(shipped, flatbuffer=convert(model, quantization="dynamic-range")),
    }
    x_report, y_report = report_part(card)
    x_full = fullres_inputs(card)
    print(f"{len(x_report)} report-part scans, {len(x_full)} full-resolution films", file=sys.stderr)
    results = {name: (scorer.assess(x_report), scorer.assess(x_full)) for name, scorer in variants.items()}
    base_report, base_full = results["float (shipped)"]
    threshold = card.threshold
    print(
        "| model | size MB | report AUC | ΔAUC | labels agree, report | labels agree, full-res | scope agrees, report "
        "| scope agrees, full-res | largest Δp | CPU ms an image |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    base_auc = roc_auc_score(y_report, base_report.probabilities)
    cpu = cpu_ms_per_image(variants)
    for name, (report, full) in results.items():
        auc = roc_auc_score(y_report, report.probabilities)
        pairs = ((report, base_report), (full, base_full))
        agree = [np.mean((a.probabilities >= threshold) == (b.probabilities >= threshold)) for a, b in pairs]
        scope = [np.mean([bool(x) == bool(y) for x, y in zip(a.scope, b.scope, strict=True)]) for a, b in pairs]
        largest = max(np.abs(a.probabilities - b.probabilities).max() for a, b in pairs)
        size = len(variants[name].flatbuffer) / 1e6
        print(
            f"| {name} | {size:.1f} | {auc:.4f} | {auc - base_auc:+.4f} | {agree[0]:.2%} | {agree[1]:.2%} | "
            f"{scope[0]:.2%} "
            f"| {scope[1]:.2%} | {largest:.4f} | {cpu[name]:.2f} |"
        )


if __name__ == "__main__":
    main()
