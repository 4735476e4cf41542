"""The streaming core: paths -> decode -> preprocess (worker threads) -> batches -> model -> rows; it writes nothing.

`load_scan` (one file) and `score_batch` (one batch) are plain functions of their inputs, so the
same steps can run elsewhere (a process pool, a cluster's workers); `score_paths` chains them on
threads with a bounded look-ahead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from xscan.errors import ScanError
from xscan.input.damage import decoding
from xscan.input.decode import open_scan
from xscan.input.dicom.image import PYDICOM_ERRORS
from xscan.input.dicom.policy import no_image_reason, skip_reason
from xscan.input.dicom.tags import blank_tags, tag_values
from xscan.input.file_warnings import FileWarning, collected, hand_over
from xscan.input.formats import Kind
from xscan.input.preprocess import preprocess_with_statistics
from xscan.model.scorer import ScoresBatches
from xscan.scoring.options import DicomOptions, ScoreOptions
from xscan.scoring.results import SKIPPED_PREFIX, Row

# Told each file just before it is opened, for as long as it is being decoded (the in-flight journal).
Watch = Callable[[Path], AbstractContextManager[object]]

# A large JPEG is decoded at 1/2, 1/4 or 1/8 scale (inside libjpeg, several times faster than a full
# decode) as long as both sides stay at least this many times the model input; decoding all the way
# down to the input size moves single scores too far (docs/throughput.md,
# tests/input/test_decode_reduced.py).
DECODE_MARGIN = 2


@dataclass(frozen=True)
class LoadedScan:
    """One file made ready for the model, or the reason it is not scored."""

    path: Path
    model_input: np.ndarray | None  # preprocessed (image_size, image_size, 1) float32, or None with `error`
    error: str = ""
    tags: dict[str, str] = field(default_factory=dict)  # DICOM tag values for the tag columns, by keyword
    warnings: tuple[FileWarning, ...] = ()  # raised while the file was read, where a run keeps them (file_warnings)
    # The film's statistics (preprocess.preprocess_with_statistics).
    film: dict[str, float] = field(default_factory=dict)


def decode_min_side(image_size: int) -> int:
    """Give the smallest side a reduced decode may leave.

    Args:
        image_size: The model input's side, in pixels.

    Returns:
        DECODE_MARGIN times that.
    """
    return DECODE_MARGIN * image_size


def load_scan(path: Path, image_size: int, dicom: DicomOptions = DicomOptions()) -> LoadedScan:
    """Open, decode and preprocess one file; a file that cannot be scored becomes an error, not an exception.

    A DICOM's header is read before its pixels: a file the policy does not score is never decoded.
    Warnings raised meanwhile come with the file, where a run keeps them
    (`file_warnings.warnings_kept`).

    Args:
        path: The file.
        image_size: The model input's side.
        dicom: Which DICOM files are scored, and which tags become columns.

    Returns:
        The model input and the film's statistics, or the reason the file is not scored (a
        skipped file's reason starts with SKIPPED_PREFIX); the DICOM tags and warnings either way.
    """
    with collected() as raised:
        loaded = _load_scan(path, image_size, dicom)
    return replace(loaded, warnings=tuple(replace(warning, path=path) for warning in raised)) if raised else loaded


def _load_scan(path: Path, image_size: int, dicom: DicomOptions) -> LoadedScan:
    tags = blank_tags(dicom.tags)
    try:
        with open_scan(path) as scan:
            if scan.kind is Kind.DICOM:
                reason, tags = _read_dicom_header(scan.dataset(), dicom)
                if reason:
                    return LoadedScan(path, None, SKIPPED_PREFIX + reason, tags)
            grey = scan.grey(min_side=decode_min_side(image_size))
            with decoding("cannot preprocess the decoded image"):
                model_input, film = preprocess_with_statistics(grey, image_size)
                return LoadedScan(path, model_input, tags=tags, film=film)
    except ScanError as error:
        return LoadedScan(path, None, str(error), tags)


def read_header_tags(path: Path, names: Sequence[str]) -> dict[str, str]:
    """Read DICOM tags from a file's header alone (no pixel is read).

    Args:
        path: The file.
        names: DICOM keywords.

    Returns:
        Each tag's value as a CSV cell; blank for a file that is not DICOM or whose header cannot be read.
    """
    try:
        with open_scan(path) as scan:
            if scan.kind is Kind.DICOM:
                return _read_dicom_header(scan.dataset(), DicomOptions(frontal_only=False, tags=tuple(names)))[1]
    except ScanError:
        pass  # a file that cannot be read now has blank tags, as its row would
    return blank_tags(tuple(names))


def _read_dicom_header(ds: Dataset, dicom: DicomOptions) -> tuple[str, dict[str, str]]:
    """Why the policy does not score the file ("" to score it), and the tag values asked for."""
    with decoding("unreadable DICOM header", PYDICOM_ERRORS):
        reason = no_image_reason(ds) or (skip_reason(ds) if dicom.frontal_only else "")
        return reason, tag_values(ds, dicom.tags)


def load_in_order(
    paths: Iterable[Path],
    image_size: int,
    workers: int,
    lookahead: int,
    dicom: DicomOptions = DicomOptions(),
    watch: Watch | None = None,
) -> Iterator[LoadedScan]:
    """Load files on threads, yielding in input order.

    An exception other than a file's ScanError (a bug, MemoryError) stops the run: files not yet
    started are cancelled rather than decoded for nothing.

    Args:
        paths: The files, in order.
        image_size: The model input's side.
        workers: Decoding threads.
        lookahead: The most files in flight.
        dicom: Which DICOM files are scored, and which tags become columns.
        watch: Told each file while it is decoded.

    Yields:
        Each file loaded (`load_scan`), in input order.
    """
    pending: deque[Future[LoadedScan]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xscan-load") as pool:
        try:
            for path in paths:
                pending.append(pool.submit(_load_watched, watch, path, image_size, dicom))
                if len(pending) >= lookahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _load_watched(watch: Watch | None, path: Path, image_size: int, dicom: DicomOptions) -> LoadedScan:
    with watch(path) if watch else nullcontext():
        return load_scan(path, image_size, dicom)


def score_paths(
    paths: Iterable[Path],
    scorer: ScoresBatches,
    options: ScoreOptions = ScoreOptions(),
    *,
    watch: Watch | None = None,
) -> Iterator[list[Row]]:
    """Score files in order, yielding the rows of each batch as soon as the model has run on it.

    Where rows go, and which weights load, is the caller's business. Memory is bounded by the
    look-ahead (a few batches of model inputs), not by the number of files. The warnings each file
    raised while it was read are handed to the calling thread's `file_warnings.collected` list, in
    file order, before its batch is yielded.

    Args:
        paths: The files, in order.
        scorer: The model.
        options: The batch size, threshold, decoding threads and DICOM options used.
        watch: Told each file while it is decoded.

    Yields:
        The rows of each batch, in file order.
    """
    threshold = options.threshold_or(scorer.threshold)
    for batch in loaded_batches(
        paths, scorer.card.image_size, options.batch_size, options.decoding_threads(), options.dicom, watch
    ):
        yield score_batch(batch, scorer, threshold)


def loaded_batches(
    paths: Iterable[Path],
    image_size: int,
    batch_size: int,
    workers: int,
    dicom: DicomOptions = DicomOptions(),
    watch: Watch | None = None,
) -> Iterator[list[LoadedScan]]:
    """Load files on threads, in order, a batch at a time; each file's warnings are handed over before its batch.

    A batch counts files, scorable or not, so a run of bad files is flushed too. Memory is bounded
    by the look-ahead (a few batches of model inputs), not by the number of files.

    Args:
        paths: The files, in order.
        image_size: The model input's side.
        batch_size: Files per batch.
        workers: Decoding threads.
        dicom: Which DICOM files are scored, and which tags become columns.
        watch: Told each file while it is decoded.

    Yields:
        Each batch of loaded files; the last may be shorter.
    """
    batch: list[LoadedScan] = []
    lookahead = 2 * batch_size + 4 * workers
    for item in load_in_order(paths, image_size, workers, lookahead, dicom, watch):
        hand_over(item.warnings)
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def score_batch(batch: list[LoadedScan], scorer: ScoresBatches, threshold: float) -> list[Row]:
    """Score one batch of loaded files.

    Args:
        batch: The loaded files.
        scorer: The model.
        threshold: The threshold the rows carry.

    Returns:
        One row per file, in order: a probability and scope verdict for each model input, the
        error of each other file.
    """
    inputs = [item.model_input for item in batch if item.model_input is not None]
    assessment = scorer.assess(np.stack(inputs)) if inputs else None
    verdicts = iter(
        zip(assessment.probabilities, assessment.scope, assessment.measures(), strict=True) if assessment else []
    )
    model_id = scorer.model_id
    rows = []
    for item in batch:
        if item.model_input is None:
            rows.append(Row(str(item.path), None, threshold, model_id, item.error, item.tags))
            continue
        probability, scope, measures = next(verdicts)
        film = {name: f"{value:.4f}" for name, value in item.film.items()}
        rows.append(
            Row(
                str(item.path),
                float(probability),
                threshold,
                model_id,
                trailing_columns=item.tags | measures | film,
                scope=scope,
            )
        )
    return rows
