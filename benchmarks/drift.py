"""False alarms and power of the drift check (xscan.stats.drift) on batches of 200 scans; the table in docs/drift.md.

    python benchmarks/drift.py [--batches 200] [--splits 5] [--cache /tmp/xscan-drift-statistics-v2.npz] [--prevalence]

Every scan's statistics are computed once with the bundled model (and cached), then batches are
drawn from them. The card's reference is all of validation (both parts, 1,036 films). To keep the
reference and the batches apart, validation is split by patient SPLITS times at random: a quarter
of each class's patients make a reference (built as the card's, effective sizes included), and
batches are drawn WITHOUT replacement from the other three quarters (about 190 normal films: enough
for a batch of 200 at 10 % pneumonia, so no film repeats within a batch). Rows pool the batches of
every split, so the rates average over which patients made the reference. The benchmark's
reference is a quarter of the card's: the card's null is narrower, its power at least as high.

Adult films come from the external report part of ../shared/data/nih_adult (the patients that did
not teach the scope check). Acquisition shifts are applied to validation's decoded films before
the shared preprocessing: xscan.training.robustness.SHIFTS (the card's), the framing crop of normal
films (docs/proxy.py), and stronger benchmark-only variants (more noise, heavier blur, larger
crops) chosen because they move specificity at the threshold by 10 points or more. The third
column is each shift's fall of specificity at the card's threshold on all validation normals.

With --prevalence every batch is judged as `xscan drift --prevalence P` judges it, P the batch's own
pneumonia share (what a site that knows its mix states): the class mixture is fixed, not fitted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from xscan.model.scorer import load_scorer
from xscan.stats.drift import STATISTICS, build_reference, check_batch
from xscan.training.config import TrainConfig
from xscan.training.dataset import find_labelled_scans, split_by_patient
from xscan.training.parts import load_images, split_for_training
from xscan.training.reference import scan_statistics
from xscan.training.robustness import SHIFTS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BATCH = 200
TRAINING_SAMPLE = 600  # films of the training part (the model fitted them), as a training-period batch
REFERENCE_SHARE = 0.25  # of each class's validation patients, per split
SHARES = (0.1, 0.5, 0.75, 0.9)  # pneumonia shares of the in-distribution batches
ADULT_SHARE = 0.3


def crop(fraction: float):
    def shift(grey: np.ndarray) -> np.ndarray:
        h, w = grey.shape
        return grey[int(h * fraction) : h - int(h * fraction), int(w * fraction) : w - int(w * fraction)]

    return shift


def noise(std: float):
    def shift(grey: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(grey.size)  # as robustness.SHIFTS' noise: fixed per image size
        return np.clip(grey + rng.normal(0, std, grey.shape), 0, 255).astype(np.uint8)

    return shift


def blur(sigma: float):
    return lambda grey: cv2.GaussianBlur(grey, (0, 0), sigma)


def keep(grey: np.ndarray) -> np.ndarray:
    return grey


def shifts() -> dict[str, tuple]:
    """Each shift's (what it does to a normal film, to a pneumonia film)."""
    chosen = {name: (shift, shift) for name, shift in SHIFTS.items() if name != "none"}
    chosen |= {f"normals cropped {p} %/side": (crop(p / 100), keep) for p in (10, 16, 22, 28)}
    chosen |= {f"noise std {std} (benchmark only)": (noise(std), noise(std)) for std in (20, 30)}
    chosen |= {f"blur sigma {sigma} (benchmark only)": (blur(sigma), blur(sigma)) for sigma in (3, 4.5)}
    return chosen


def collect(cache: Path) -> dict[str, np.ndarray]:
    """Every scan's statistics, label and patient, by group, computed once and cached in CACHE."""
    if cache.exists():
        with np.load(cache) as stored:
            return dict(stored)
    config = TrainConfig()
    train, select, report = split_for_training(find_labelled_scans(DATA / "chest_xray" / "train"), config)
    rng = np.random.default_rng(1)
    train = [train[i] for i in rng.choice(len(train), TRAINING_SAMPLE, replace=False)]
    external = split_by_patient(
        find_labelled_scans(DATA / "nih_adult"), config.scope.external_report_fraction, config.seed + 2
    )[1]
    scorer = load_scorer(threads=0)
    out: dict[str, np.ndarray] = {}

    def add(group: str, greys: list[np.ndarray], scans) -> None:
        for name, values in scan_statistics(scorer, greys).items():
            out[f"{group}/{name}"] = values
        out[f"{group}/label"] = np.array([s.label for s in scans])
        out[f"{group}/patient"] = np.array([s.patient_id for s in scans])

    validation = select + report
    greys = load_images(validation)
    labels = np.array([s.label for s in validation])
    add("validation", greys, validation)
    for group, scans in (("training", train), ("adult", external)):
        add(group, load_images(scans), scans)
    for name, (normal, pneumonia) in shifts().items():
        add(f"shift {name}", [(pneumonia if y else normal)(g) for g, y in zip(greys, labels, strict=True)], validation)
    np.savez(cache, **out)
    return out


def group(stats: dict[str, np.ndarray], name: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    prefix = name + "/"
    columns = {k[len(prefix) :]: v for k, v in stats.items() if k.startswith(prefix) and "/" not in k[len(prefix) :]}
    return {k: v for k, v in columns.items() if k not in ("label", "patient")}, columns["label"], columns["patient"]


def reference_patients(labels: np.ndarray, patients: np.ndarray, rng) -> np.ndarray:
    """A mask of the films of REFERENCE_SHARE of each class's patients."""
    chosen = set()
    for label in (0, 1):
        own = np.unique(patients[labels == label])
        chosen |= set(rng.choice(own, int(round(REFERENCE_SHARE * len(own))), replace=False).tolist())
    return np.array([patient in chosen for patient in patients])


def draw(values: dict[str, np.ndarray], labels: np.ndarray, pool: np.ndarray, normals: int, pneumonias: int, rng):
    """A batch of NORMALS and PNEUMONIAS films of POOL (indices), no film twice."""
    picks = np.concatenate(
        [
            rng.choice(pool[labels[pool] == 0], normals, replace=False),
            rng.choice(pool[labels[pool] == 1], pneumonias, replace=False),
        ]
    )
    return {name: column[picks] for name, column in values.items()}


def tally(rates: dict[str, list], row: str, findings) -> None:
    rates.setdefault(row, []).append({f.statistic: f.drifted for f in findings})


def specificity_drop(stats, name: str, threshold: float) -> float:
    base = stats["validation/probability"][stats["validation/label"] == 0]
    shifted = stats[f"{name}/probability"][stats[f"{name}/label"] == 0]
    return float((base < threshold).mean() - (shifted < threshold).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200, help="per row, over all splits")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/xscan-drift-statistics-v2.npz"))
    parser.add_argument("--prevalence", action="store_true", help="judge each batch at its own pneumonia share")
    args = parser.parse_args()

    def check(batch: dict[str, np.ndarray], references, share: float):
        return check_batch(batch, references, prevalence=share if args.prevalence else None)

    started = time.monotonic()
    stats = collect(args.cache)
    threshold = load_scorer(threads=0, scope_check=False).card.threshold
    validation, labels, patients = group(stats, "validation")
    training, training_labels, _ = group(stats, "training")
    adult, adult_labels, _ = group(stats, "adult")
    shifted = sorted({k.rsplit("/", 1)[0] for k in stats if k.startswith("shift ")})
    rng = np.random.default_rng(7)
    rates: dict[str, list] = {}
    per_split = [len(part) for part in np.array_split(np.arange(args.batches), args.splits)]
    reference_sizes = []
    for batches in per_split:
        in_reference = reference_patients(labels, patients, rng)
        reference_sizes.append(int(in_reference.sum()))
        references = {
            name: build_reference(values[in_reference], labels[in_reference], patients[in_reference])
            for name, values in validation.items()
        }
        pool = np.flatnonzero(~in_reference)
        for _ in range(batches):
            for share in SHARES:
                pneumonias = int(round(BATCH * share))
                batch = draw(validation, labels, pool, BATCH - pneumonias, pneumonias, rng)
                tally(rates, f"validation, {share:.0%} pneumonia", check(batch, references, pneumonias / BATCH))
            batch = draw(training, training_labels, np.arange(len(training_labels)), BATCH // 2, BATCH // 2, rng)
            tally(rates, "training part (fitted by the model), 50 % pneumonia", check(batch, references, 0.5))
            adults = int(ADULT_SHARE * BATCH)
            own = draw(validation, labels, pool, (BATCH - adults) // 2, BATCH - adults - (BATCH - adults) // 2, rng)
            other = draw(adult, adult_labels, np.arange(len(adult_labels)), adults // 2, adults - adults // 2, rng)
            batch = {name: np.concatenate([own[name], other[name]]) for name in own}
            share = ((BATCH - adults) - (BATCH - adults) // 2 + adults - adults // 2) / BATCH
            tally(rates, f"{ADULT_SHARE:.0%} adult films (NIH), 70 % validation", check(batch, references, share))
            for name in shifted:
                values, shift_labels, _ = group(stats, name)
                batch = draw(values, shift_labels, pool, BATCH // 2, BATCH // 2, rng)
                tally(rates, name, check(batch, references, 0.5))
    names = [s.name for s in STATISTICS if s.name in validation]
    mixture = "fixed at each batch's own pneumonia share (--prevalence)" if args.prevalence else "fitted"
    print(f"class mixture: {mixture}")
    print(
        f"{args.batches} batches of {BATCH} per row over {args.splits} splits; reference: a quarter of validation's "
        f"patients ({min(reference_sizes)}-{max(reference_sizes)} films), batches from the other three quarters"
    )
    print("| batches | rate of | specificity drop at the threshold | any alarm | " + " | ".join(names) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in names) + " |")
    for row, results in rates.items():
        is_shift = row.startswith("shift ")
        kind = "false alarms" if row.startswith(("validation", "training")) else "alarms"
        label = f"validation, {row[6:]}, 50 % pneumonia" if is_shift else row
        drop = f"{specificity_drop(stats, row, threshold):+.3f}" if is_shift else ""
        anyone = np.mean([any(result.values()) for result in results])
        per = " | ".join(f"{np.mean([result[n] for result in results]):.3f}" for n in names)
        print(f"| {label} | {kind} | {drop} | {anyone:.3f} | {per} |")
    print("\nFalse alarms by split (each split's reference a different quarter of validation's patients):")
    bounds = np.cumsum([0, *per_split])
    for row, results in rates.items():
        if row.startswith(("validation", "training")):
            alarms = [any(result.values()) for result in results]
            print(
                f"- {row}: "
                + ", ".join(f"{np.mean(alarms[a:b]):.3f}" for a, b in zip(bounds[:-1], bounds[1:], strict=True))
            )
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
