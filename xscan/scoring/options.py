"""The settings of a scoring run: one frozen dataclass for `score_folder` and the streaming core, one default each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xscan.errors import OptionError
from xscan.scoring.cpus import usable_cpus


@dataclass(frozen=True, kw_only=True)
class DicomOptions:
    """What a scoring run does with DICOM files besides decoding them."""

    frontal_only: bool = True  # score only frontal radiographs; others are rows with a `skipped: ...` reason
    tags: tuple[str, ...] = ()  # DICOM keywords written as extra CSV columns, in this order


@dataclass(frozen=True, kw_only=True)
class ScoreOptions:
    """How to score: every setting of `xscan score` that is not about printing or logging.

    Keyword-only, so that settings can be added in any order without breaking callers.
    """

    batch_size: int = 32  # files per batch: rows are written, and flushed, batch by batch
    threshold: float | None = None  # decision threshold; None: the model card's
    workers: int = 0  # decoding threads; 0: one per CPU this process may use (affinity, cgroup quota)
    weights: Path | None = None  # weights folder; None: the bundled model
    overwrite: bool = False  # start the results file afresh instead of resuming it
    wait: bool = False  # wait for another run writing the same results file, instead of refusing at once
    dicom: DicomOptions = field(default_factory=DicomOptions)
    scope_check: bool = True  # label scans the model was not built for OUT_OF_SCOPE; off only for research use
    calibration: Path | None = None  # a site calibration file (SITE.json from `xscan calibrate`) for this model
    # Decode and score on a Ray cluster's workers (xscan.scoring.ray_driver); `workers` then does not apply.
    ray: bool = False
    ray_address: str | None = None  # with ray: the cluster to join; None: RAY_ADDRESS, else one on this machine

    def __post_init__(self) -> None:
        """Refuse settings that cannot work, before anything is read."""
        if self.batch_size < 1:
            raise OptionError(f"batch_size must be at least 1, not {self.batch_size}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise OptionError(f"threshold must lie between 0 and 1, not {self.threshold}")
        if self.workers < 0:
            raise OptionError(f"workers must be 0 (one per usable CPU) or more, not {self.workers}")
        if self.ray_address is not None and not self.ray:
            raise OptionError("ray_address is the Ray cluster of a run with ray=True")

    def threshold_or(self, card_threshold: float) -> float:
        """The decision threshold of the run: the one asked for, else the model card's."""
        return card_threshold if self.threshold is None else self.threshold

    def decoding_threads(self) -> int:
        """How many threads decode and preprocess files."""
        return self.workers or usable_cpus()
