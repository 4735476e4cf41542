"""False alarms and power of the drift check (xscan.stats.drift) on batches of 200 scans; the table in docs/drift.md.

    python benchmarks/drift.py [--batches 200] [--cache /tmp/xscan-drift-statistics.npz]

Every scan's statistics are computed once with the bundled model (and cached), then batches are
resampled from them. The reference is built from the SELECTION part of validation, and the
in-distribution batches are drawn from the REPORT part, so no batch contains a scan of its
reference (the bundled card's reference is the report part itself; both parts are validation
patients the model never trained on, split at random by patient). A batch of 200 at 10 % or 90 %
pneumonia needs more scans of one class than the report part has (127 normals), so batches are
drawn with replacement. Adult films come from the external report part of ../shared/data/nih_adult
(the patients that did not teach the scope check). Acquisition shifts are applied to the report
part's decoded films before the shared preprocessing: xscan.training.robustness.SHIFTS, and the
framing crop of normal films (docs/proxy.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from xscan.model.scorer import load_scorer
from xscan.stats.drift import STATISTICS, build_reference, check_batch
from xscan.training.dataset import find_labelled_scans, split_by_patient
from xscan.training.reference import scan_statistics
from xscan.training.robustness import SHIFTS
from xscan.training.train import TrainConfig, load_images, split_for_training

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BATCH = 200
TRAINING_SAMPLE = 600  # films of the training part (the model fitted them), as a training-period batch


def crop(fraction: float):
    def shift(grey: np.ndarray) -> np.ndarray:
        h, w = grey.shape
        return grey[int(h * fraction) : h - int(h * fraction), int(w * fraction) : w - int(w * fraction)]

    return shift


def collect(cache: Path) -> dict[str, np.ndarray]:
    """Every scan's statistics and label, by group, computed once and cached in CACHE."""
    if cache.exists():
        with np.load(cache) as stored:
            return dict(stored)
    config = TrainConfig()
    train, select, report = split_for_training(find_labelled_scans(DATA / "chest_xray" / "train"), config)
    rng = np.random.default_rng(1)
    train = [train[i] for i in rng.choice(len(train), TRAINING_SAMPLE, replace=False)]
    external = split_by_patient(find_labelled_scans(DATA / "nih_adult"), config.scope.external_report_fraction, config.seed + 2)[1]
    scorer = load_scorer(threads=0)
    out: dict[str, np.ndarray] = {}

    def add(group: str, greys: list[np.ndarray], labels: np.ndarray) -> None:
        for name, values in scan_statistics(scorer, greys).items():
            out[f"{group}/{name}"] = values
        out[f"{group}/label"] = labels

    for group, scans in (("selection", select), ("report", report), ("training", train), ("adult", external)):
        add(group, load_images(scans), np.array([s.label for s in scans]))
    report_greys, report_labels = load_images(report), np.array([s.label for s in report])
    shifts = {name: (shift, shift) for name, shift in SHIFTS.items() if name != "none"}
    shifts |= {f"normals cropped {p} %/side": (crop(p / 100), lambda g: g) for p in (10, 16)}
    for name, (normal, pneumonia) in shifts.items():
        add(f"shift {name}", [(pneumonia if y else normal)(g) for g, y in zip(report_greys, report_labels, strict=True)], report_labels)
    np.savez(cache, **out)
    return out


def group(stats: dict[str, np.ndarray], name: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    prefix = name + "/"
    columns = {k[len(prefix):]: v for k, v in stats.items() if k.startswith(prefix) and "/" not in k[len(prefix):]}
    return {k: v for k, v in columns.items() if k != "label"}, columns["label"]


def draw(values: dict[str, np.ndarray], labels: np.ndarray, normals: int, pneumonias: int, rng) -> dict[str, np.ndarray]:
    picks = np.concatenate([rng.choice(np.flatnonzero(labels == 0), normals), rng.choice(np.flatnonzero(labels == 1), pneumonias)])
    return {name: column[picks] for name, column in values.items()}


def alarm_rate(batches, references) -> tuple[float, dict[str, float]]:
    alarms, per_statistic = 0, dict.fromkeys(references, 0)
    for batch in batches:
        findings = check_batch(batch, references)
        alarms += any(f.drifted for f in findings)
        for f in findings:
            per_statistic[f.statistic] += f.drifted
    count = len(batches)
    return alarms / count, {name: hits / count for name, hits in per_statistic.items()}


def specificity_drop(stats, name: str, threshold: float) -> float:
    base = stats["report/probability"][stats["report/label"] == 0]
    shifted = stats[f"{name}/probability"][stats[f"{name}/label"] == 0]
    return float((base < threshold).mean() - (shifted < threshold).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/xscan-drift-statistics.npz"))
    args = parser.parse_args()
    started = time.monotonic()
    stats = collect(args.cache)
    threshold = load_scorer(threads=0, scope_check=False).card.threshold
    selection, selection_labels = group(stats, "selection")
    references = {name: build_reference(values, selection_labels) for name, values in selection.items()}
    report, report_labels = group(stats, "report")
    rng = np.random.default_rng(7)
    rows = []
    for share in (0.1, 0.5, 0.75, 0.9):
        pneumonias = int(round(BATCH * share))
        batches = [draw(report, report_labels, BATCH - pneumonias, pneumonias, rng) for _ in range(args.batches)]
        rows.append((f"report part, {share:.0%} pneumonia", "false alarms", "", *alarm_rate(batches, references)))
    training, training_labels = group(stats, "training")
    batches = [draw(training, training_labels, BATCH // 2, BATCH // 2, rng) for _ in range(args.batches)]
    rows.append(("training part (fitted by the model), 50 % pneumonia", "false alarms", "", *alarm_rate(batches, references)))
    adult, adult_labels = group(stats, "adult")
    adults = int(0.3 * BATCH)
    batches = []
    for _ in range(args.batches):
        own = draw(report, report_labels, (BATCH - adults) // 2, BATCH - adults - (BATCH - adults) // 2, rng)
        other = draw(adult, adult_labels, adults // 2, adults - adults // 2, rng)
        batches.append({name: np.concatenate([own[name], other[name]]) for name in own})
    rows.append(("30 % adult films (NIH), 70 % report part", "alarms", "", *alarm_rate(batches, references)))
    for name in sorted({k.rsplit("/", 1)[0] for k in stats if k.startswith("shift ")}):
        values, labels = group(stats, name)
        batches = [draw(values, labels, BATCH // 2, BATCH // 2, rng) for _ in range(args.batches)]
        drop = specificity_drop(stats, name, threshold)
        rows.append((f"report part, {name[6:]}, 50 % pneumonia", "alarms", f"{drop:+.3f}", *alarm_rate(batches, references)))
    names = [s.name for s in STATISTICS if s.name in references]
    print(f"{args.batches} batches of {BATCH} per row; reference: selection part ({len(selection_labels)} scans)")
    print("| batches | rate of | specificity drop at the threshold | any alarm | " + " | ".join(names) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in names) + " |")
    for label, kind, drop, rate, per in rows:
        print(f"| {label} | {kind} | {drop} | {rate:.3f} | " + " | ".join(f"{per[n]:.3f}" for n in names) + " |")
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
