"""What a model was trained on, for its card: the folder as given, scans and patients per class, content hash, source.

The content hash is sha256 over the sorted lines "relative path TAB label TAB file sha256", one per
scan used: it names the files and labels, not where the folder lies. The Kermany attribution (and
the population and site guidance that go with it) is written only where the folder's hash is the
Kermany training split's, the data the bundled model was trained on; any other folder's card says
what `xscan train --data-source` was given, or that its source is not stated.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from xscan.model.card import TrainingData
from xscan.model.classes import CLASS_NAMES
from xscan.training.dataset import LabelledScan
from xscan.training.parts import Split

# sha256 over ../shared/data/chest_xray/train (5,216 scans) as `content_sha256` computes it.
KERMANY_TRAIN_SHA256 = "8f2d7a5c3cdbc9aeb8d74dd13941c57146baec8a2926043d17e8990b7dadfe42"
KERMANY_SOURCE = "Kermany et al. 2018 pediatric chest X-ray, training split (Guangzhou; CC BY 4.0)"
NOT_STATED = "not stated (`xscan train --data-source TEXT` records where the scans came from)"

KERMANY_POPULATION = (
    "Frontal chest radiographs of children (about 1 to 5 years old) from one hospital (Guangzhou Women and "
    "Children's Medical Center), as in the Kermany et al. 2018 data set. Adult films, other hospitals' "
    "equipment and other views are outside it."
)
# What a new site should expect of the card's figures. The example is the project's own measurement of run H on
# the Kermany data set's held-out test split (issue 23), so only a card trained on that data set carries it.
_CALIBRATE = (
    "Run `xscan calibrate` on a labelled local sample to set your own threshold, and `xscan drift` on every run to "
    "learn when your scans stop looking like the ones it was calibrated on."
)
KERMANY_SITE_GUIDANCE = (
    "The report part's figures hold for scans like the training hospital's. At another period or site, expect the "
    "threshold to move: on scans of another period of the same data set, specificity at the shipped threshold fell "
    "from 0.96 to 0.80 (sensitivity 0.98, AUC 0.98): the ranking travelled, the threshold did not. " + _CALIBRATE
)
SITE_GUIDANCE = (
    "The report part's figures hold for scans like the training folder's. At another period or site, expect the "
    "threshold to move even where the ranking (AUC) travels. " + _CALIBRATE
)


def content_sha256(scans: Sequence[LabelledScan], data_dir: Path) -> str:
    """The content hash of SCANS: sha256 over the sorted lines "relative path TAB label TAB file sha256".

    Args:
        scans: the labelled scans used.
        data_dir: the folder their paths are made relative to (the folder `xscan train` was given).

    Returns:
        The hash as 64 hexadecimal digits.
    """
    lines = sorted(
        f"{Path(os.path.relpath(scan.path, data_dir)).as_posix()}\t{CLASS_NAMES[scan.label]}\t{_file_sha256(scan.path)}"
        for scan in scans
    )
    return hashlib.sha256("".join(line + "\n" for line in lines).encode()).hexdigest()


def training_data(
    data_dir: Path,
    scans: Sequence[LabelledScan],
    split: Split,
    *,
    external: Path | None = None,
    labels_file: Path | None = None,
    data_source: str | None = None,
) -> TrainingData:
    """The card's record of the data SCANS (found in DATA_DIR) and their SPLIT.

    Args:
        data_dir: the folder as `xscan train` was given it.
        scans: every scan used.
        split: their three parts.
        external: the --external folder, if any.
        labels_file: the --labels-file, if any.
        data_source: what --data-source said; None lets the content hash decide (Kermany, or not stated).

    Returns:
        The `training.data` section.
    """
    digest = content_sha256(scans, data_dir)
    known = KERMANY_SOURCE if digest == KERMANY_TRAIN_SHA256 else NOT_STATED
    return TrainingData(
        source=data_source or known,
        folder=str(data_dir),
        train=_counts(split.train),
        selection=_counts(split.select),
        report=_counts(split.report),
        selection_patients=_patients(split.select),
        report_patients=_patients(split.report),
        external=str(external) if external else None,
        labels_file=str(labels_file) if labels_file else None,
        scans=_counts(scans),
        patients=_patients(scans),
        train_patients=_patients(split.train),
        content_sha256=digest,
    )


def is_kermany(data: TrainingData) -> bool:
    """Whether DATA is the Kermany training split, by its content hash (never by its folder's name)."""
    return data.content_sha256 == KERMANY_TRAIN_SHA256


def intended_population(data: TrainingData) -> str:
    """The card's `intended_population` for a model trained on DATA."""
    if is_kermany(data):
        return KERMANY_POPULATION
    return (
        f"Scans like those of the training folder ({data.folder}: {sum(data.scans.values())} scans of "
        f"{data.patients} patients; source: {data.source}). Other populations, equipment and views are outside it."
    )


def site_guidance(data: TrainingData) -> str:
    """The card's `site_guidance` for a model trained on DATA."""
    return KERMANY_SITE_GUIDANCE if is_kermany(data) else SITE_GUIDANCE


def check_same_data(recorded: TrainingData, found: TrainingData) -> None:
    """Refuse a folder other than the one a card's model was trained on: a refit on it would misstate the card.

    Compared by content hash where the card has one, else (cards before issue 29) by the split's counts.

    Args:
        recorded: the card's `training.data`.
        found: the same record made from the folder given now.

    Raises:
        TrainingDataError: the folder's scans are not the recorded ones.
    """
    from xscan.errors import TrainingDataError

    if recorded.content_sha256:
        same = recorded.content_sha256 == found.content_sha256
        what = f"content sha256 {found.content_sha256[:8]}, the card's {recorded.content_sha256[:8]}"
    else:
        parts = ("train", "selection", "report")
        same = all(getattr(recorded, part) == getattr(found, part) for part in parts)
        what = ", ".join(f"{part} {getattr(found, part)} (card: {getattr(recorded, part)})" for part in parts)
    if not same:
        raise TrainingDataError(
            f"{found.folder} is not the data the model was trained on ({recorded.folder}): {what}; "
            "give the training folder (and --labels-file) the card records"
        )


def _counts(scans: Sequence[LabelledScan]) -> dict[str, int]:
    return {name: sum(scan.label == index for scan in scans) for index, name in enumerate(CLASS_NAMES)}


def _patients(scans: Sequence[LabelledScan]) -> int:
    return len({scan.patient_id for scan in scans})


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()
