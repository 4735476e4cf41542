"""The streaming pipeline: files -> decode -> preprocess (worker threads) -> batches -> model -> rows."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xscan.decode import ScanError, decode
from xscan.dicom import DicomOptions, read_header
from xscan.model import Scorer
from xscan.preprocess import preprocess
from xscan.results import Row
from xscan.walk import is_dicom


@dataclass(frozen=True)
class Loaded:
    path: Path
    scan: np.ndarray | None  # model input, or None with `error`
    error: str = ""
    extra: dict[str, str] = field(default_factory=dict)  # DICOM tag values for the extra columns, by keyword


# A large JPEG is decoded at 1/2, 1/4 or 1/8 scale (inside libjpeg, several times faster than a full
# decode) as long as both sides stay at least this many times the model input. At 1x the decode is
# 1.4x faster again, but single scores moved by up to 0.087 against a full decode; at 2x by at most
# 0.029 (tests/test_decode_reduced.py bounds it).
DECODE_MARGIN = 2


def decode_min_side(image_size: int) -> int:
    """The smallest side a reduced decode may leave, for a model input of IMAGE_SIZE pixels."""
    return DECODE_MARGIN * image_size


def load_scan(path: Path, image_size: int, dicom: DicomOptions = DicomOptions()) -> Loaded:
    """Decode and preprocess one file; a file that cannot be scored becomes an error, not an exception."""
    extra = dicom.blank_tags
    try:
        if is_dicom(path):
            header = read_header(path, dicom)
            extra = header.tags
            if header.skip_reason:
                raise ScanError(header.skip_reason)
        return Loaded(path, preprocess(decode(path, min_side=decode_min_side(image_size)), image_size), extra=extra)
    except ScanError as error:
        return Loaded(path, None, str(error), extra)


def load_in_order(
    paths: Iterable[Path], image_size: int, workers: int, lookahead: int, dicom: DicomOptions = DicomOptions()
) -> Iterator[Loaded]:
    """Load files on WORKERS threads, yielding in input order with at most LOOKAHEAD in flight."""
    pending: deque[Future[Loaded]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xscan-load") as pool:
        for path in paths:
            pending.append(pool.submit(load_scan, path, image_size, dicom))
            if len(pending) >= lookahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def score_paths(
    paths: Iterable[Path],
    scorer: Scorer,
    batch_size: int = 32,
    threshold: float | None = None,
    workers: int | None = None,
    dicom: DicomOptions = DicomOptions(),
) -> Iterator[list[Row]]:
    """Score files in order, yielding the rows of each batch as soon as the model has run on it.

    Memory is bounded by the look-ahead (a few batches of model inputs), not by the folder.
    DICOM files are filtered and their tags read as DICOM says (see xscan.dicom.DicomOptions).
    """
    threshold = scorer.card.threshold if threshold is None else threshold
    workers = workers or os.cpu_count() or 1
    model_id = scorer.card.model_id
    batch: list[Loaded] = []  # BATCH_SIZE files, scorable or not: a run of bad files is flushed too
    loaded = load_in_order(paths, scorer.card.image_size, workers, lookahead=2 * batch_size + 4 * workers, dicom=dicom)
    for item in loaded:
        batch.append(item)
        if len(batch) == batch_size:
            yield _score_batch(batch, scorer, threshold, model_id)
            batch = []
    if batch:
        yield _score_batch(batch, scorer, threshold, model_id)


def _score_batch(batch: list[Loaded], scorer: Scorer, threshold: float, model_id: str) -> list[Row]:
    scans = [entry.scan for entry in batch if entry.scan is not None]
    probabilities = iter(scorer.probabilities(np.stack(scans)) if scans else [])
    return [
        Row(str(entry.path), float(next(probabilities)), threshold, model_id, extra=entry.extra)
        if entry.scan is not None
        else Row(str(entry.path), None, threshold, model_id, entry.error, entry.extra)
        for entry in batch
    ]
