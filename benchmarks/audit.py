"""False alarms and power of `xscan audit` (xscan.audit.check, xscan.stats.cusum); the table in docs/audit.md.

    python benchmarks/audit.py [--repeats 500] [--cache /tmp/xscan-audit-probabilities-v1.npz]

The real model scores, once (then cached), the report part of validation (the films the card's
figures were measured on: they chose nothing) and every labelled film of ../shared/data/nih_adult.
Reads are then made up from those films' labels and scores, as radiologists' reads of them would
come, and audited against the card's figures with the library's own `audit`:

- the report part read as one month, and as four weeks, in a random order each repeat: no alarm
  may come (their figures are the promise: at most 5 % false alarms);
- four weeks of 100 reads drawn with replacement from the report part (so each week's true figures
  are the card's: the false-alarm rate of the test at exactly the promise), at three pneumonia shares;
- the same with the last week's normal films' scores raised (their logit shifted until specificity at
  the threshold falls by 15 points on the report part's normals): the chance the drop is caught;
- the adult films read in a random order each repeat: the promise must be seen broken.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from xscan.audit.check import BROKEN, audit
from xscan.audit.promise import promises
from xscan.audit.reads import Judged, Matched, Read, Reads
from xscan.model.card import read_card
from xscan.model.scorer import load_scorer
from xscan.model.site_calibration import clipped_logit
from xscan.scoring.pipeline import score_paths
from xscan.scoring.results import Row
from xscan.stats import cusum
from xscan.training.dataset import find_labelled_scans
from xscan.training.train import TrainConfig, split_for_training

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WEEK = 100  # reads a week in the simulated month
SHARES = (0.25, 0.5, 0.76)  # pneumonia shares of the simulated weeks; 0.76 is the report part's own
DROP = 0.15  # the simulated fall of specificity in the last week
START = datetime(2026, 3, 2)  # a Monday: four weeks from here are ISO weeks 10 to 13


def collect(cache: Path) -> dict[str, np.ndarray]:
    """The model's probability and the label of each report-part and adult film, scored once and cached in CACHE."""
    if cache.exists():
        with np.load(cache) as stored:
            return dict(stored)
    scorer = load_scorer(threads=0)
    recipe = scorer.card.training.recipe
    config = replace(
        TrainConfig(),
        val_fraction=recipe["val_fraction"],
        report_fraction=recipe["report_fraction"],
        seed=recipe["seed"],
    )
    report = split_for_training(find_labelled_scans(DATA / "chest_xray" / "train"), config)[2]
    out = {}
    for name, scans in (("report", report), ("adult", find_labelled_scans(DATA / "nih_adult"))):
        rows = [row for batch in score_paths([s.path for s in scans], scorer) for row in batch]
        out[f"{name}/probability"] = np.array([row.probability for row in rows], np.float64)
        out[f"{name}/label"] = np.array([s.label for s in scans])
    out["threshold"] = np.array(scorer.card.threshold)
    np.savez(cache, **out)
    return out


def audited(probabilities: np.ndarray, labels: np.ndarray, days: np.ndarray, threshold: float, promised, by: str):
    """The audit of one read per film, read on START + DAYS, in the given order."""
    judged = [
        Judged(Read(str(i), int(label), START + timedelta(days=float(day)), i), Row(str(i), p, threshold, "m"), "")
        for i, (p, label, day) in enumerate(zip(probabilities, labels, days, strict=True))
    ]
    return audit(Matched(judged, [], []), Reads("reads", "path", [j.read for j in judged]), promised, by)


def raised_by(normal: np.ndarray, threshold: float, drop: float) -> float:
    """The logit shift that takes specificity at THRESHOLD on the NORMAL films' scores down by DROP."""
    margin = np.sort(np.log(threshold / (1 - threshold)) - clipped_logit(normal))  # > 0: below the threshold
    first = int((margin <= 0).sum())  # the first film below the threshold, in MARGIN's order
    pushed = first + int(round(len(normal) * drop))  # the films from FIRST up to here go over it
    return float((margin[pushed - 1] + margin[pushed]) / 2)  # half way between the last film pushed and the next


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/xscan-audit-probabilities-v1.npz"))
    args = parser.parse_args()
    started = time.monotonic()
    data = collect(args.cache)
    threshold = float(data["threshold"])
    card = read_card(Path(__file__).resolve().parents[1] / "weights")
    promised = promises(card)
    rng = np.random.default_rng(11)
    p, y = data["report/probability"], data["report/label"]
    normal, pneumonia = p[y == 0], p[y == 1]
    shift = raised_by(normal, threshold, DROP)
    raised = 1 / (1 + np.exp(-(clipped_logit(normal) + shift)))
    specificity = ((normal < threshold).mean(), (raised < threshold).mean())
    rows: list[tuple[str, str, float]] = []

    def rate(row: str, kind: str, verdicts: list[str]) -> None:
        rows.append((row, kind, float(np.mean([v == BROKEN for v in verdicts]))))

    n = len(p)
    one_month = [
        audited(*_shuffled(p, y, rng), rng.uniform(0, 28, n), threshold, promised, "month") for _ in range(args.repeats)
    ]
    rate(
        f"report part ({(y == 0).sum()} normal, {(y == 1).sum()} pneumonia) as one month",
        "false alarms",
        [a.verdict for a in one_month],
    )
    weeks = np.repeat(np.arange(4) * 7, int(np.ceil(n / 4)))[:n] + 0.5
    rate(
        "report part as four weeks",
        "false alarms",
        [audited(*_shuffled(p, y, rng), weeks, threshold, promised, "week").verdict for _ in range(args.repeats)],
    )
    for share in SHARES:
        sick = int(round(WEEK * share))
        days = np.repeat(np.arange(4) * 7, WEEK) + 0.5
        for label, last in (
            ("no drop", normal),
            (f"specificity {specificity[0]:.3f} -> {specificity[1]:.3f} in week 4", raised),
        ):
            verdicts = []
            for _ in range(args.repeats):
                weeks_p, weeks_y = [], []
                for week in range(4):
                    pool = last if week == 3 else normal
                    weeks_p += [rng.choice(pool, WEEK - sick), rng.choice(pneumonia, sick)]
                    weeks_y += [np.zeros(WEEK - sick, int), np.ones(sick, int)]
                verdicts.append(
                    audited(np.concatenate(weeks_p), np.concatenate(weeks_y), days, threshold, promised, "week").verdict
                )
            kind = "false alarms" if last is normal else "caught"
            rate(f"4 weeks of {WEEK} reads, {share:.0%} pneumonia, {label}", kind, verdicts)
    a, b = data["adult/probability"], data["adult/label"]
    rate(
        f"nih_adult ({(b == 0).sum()} normal, {(b == 1).sum()} pneumonia) as four weeks",
        "alarms",
        [
            audited(*_shuffled(a, b, rng), rng.uniform(0, 28, len(a)), threshold, promised, "week").verdict
            for _ in range(args.repeats)
        ],
    )
    print(f"{args.repeats} repeats per row; promise: " + "; ".join(x.describe() for x in promised))
    print(
        f"report part at the threshold: specificity {specificity[0]:.3f}; normal films' logit raised by {shift:.3f} "
        f"for week 4: {specificity[1]:.3f}"
    )
    print("| reads | rate of | rate |")
    print("| --- | --- | --- |")
    for row, kind, value in rows:
        print(f"| {row} | {kind} | {value:.3f} |")
    print("\nReads of one class that see a 10-point drop with 80 % power at 2.5 % (Holm's first level):")
    for x in promised:
        chart = cusum.chart_for(x.value)
        print(
            f"- {x.figure} {x.value:.3f}: {cusum.reads_needed(chart, 0.025)} "
            f"(90 %: {cusum.reads_needed(chart, 0.025, 0.9)})"
        )
    print(f"({time.monotonic() - started:.0f} s)")


def _shuffled(p: np.ndarray, y: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(len(p))
    return p[order], y[order]


if __name__ == "__main__":
    main()
