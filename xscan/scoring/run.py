"""`score_folder`: all `xscan score` does, as one library call (walk, resume, score, write, summary); it prints nothing.

What happens along the way is told to an optional callback as events, in this order: each path
the walk passed over (`NotScanned`), a wait for another run's lock (`Waiting`, with `wait` only),
a repaired results file (`Repaired`), the plan (`Planned`), then the rows of each batch once
written (`RowsWritten`), each preceded by the warnings its files raised while they were read
(`Warned`). A run that cannot start or go on raises a `xscan.errors.RunError` (its
`exit_code` says how `xscan score` exits); Ctrl-C propagates as KeyboardInterrupt, and the next
run resumes. Any other exception is a bug or a resource that ran out (MemoryError): it propagates
too, and no file's row hides it.

A results file (not `-`) is written by one run at a time (`xscan.scoring.lock`); what a re-run needs
is kept in the state file beside it (`xscan.scoring.state`), and so are the files being decoded
(`xscan.scoring.journal`), so that a file that crashed the process twice is not opened a third time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xscan.errors import EXIT_OK, EXIT_SOME_FAILED, OptionError, ResultsWriteError, UsageError
from xscan.input.file_warnings import FileWarning, collected, warnings_kept
from xscan.input.native_messages import native_messages_kept
from xscan.input.walk import find_scans
from xscan.model.card import default_weights_dir, read_card
from xscan.model.scorer import Scorer, load_scorer
from xscan.scoring.journal import CRASHES_TO_SKIP, InFlightJournal
from xscan.scoring.lock import results_lock
from xscan.scoring.options import ScoreOptions
from xscan.scoring.pipeline import Watch, read_header_tags, score_paths
from xscan.scoring.results import KEY_COLUMN, MEASURE_COLUMNS, Row, drift_values
from xscan.scoring.resume import StreamResults, Tally, open_results
from xscan.stats.drift import MIN_SCANS, DriftVerdict, judge

if TYPE_CHECKING:
    from xscan.model.site_calibration import LoadedSite


@dataclass(frozen=True)
class NotScanned:
    """A path the walk passed over (a broken link, a link loop, a pipe named like a scan)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Waiting:
    """Another run holds the results file's lock; this one waits for it (ScoreOptions.wait)."""

    lock: Path


@dataclass(frozen=True)
class Repaired:
    """The results file ended in a torn line, left by an interrupted run; it was dropped, its file scored again."""

    output: str


@dataclass(frozen=True)
class Notice:
    """Something the user should know about the run, e.g. that the model has no out-of-scope check."""

    message: str


@dataclass(frozen=True)
class Planned:
    """What the run will do: files to score now, and files unchanged since an earlier run."""

    to_score: int
    unchanged: int


@dataclass(frozen=True)
class Warned:
    """A warning raised by the run or while a file was read (pydicom on an odd file; `warning.path` names it)."""

    warning: FileWarning


@dataclass(frozen=True)
class RowsWritten:
    """The rows of one batch, written and flushed to the output."""

    rows: list[Row]


Event = NotScanned | Waiting | Repaired | Notice | Planned | Warned | RowsWritten


@dataclass(frozen=True)
class ScoreSummary:
    """How a run went: what became of each file found, and the exit code `xscan score` ends with."""

    folder: Path
    output: str
    found: int  # candidate files below the folder
    scored: int
    failed: int  # rows with an error: files that could not be read or decoded
    skipped: int  # rows not scored by policy (`skipped: ...`): DICOMs that are not frontal radiographs
    unchanged: int  # scored by an earlier run into the same output and not changed since
    seconds: float
    exit_code: int
    out_of_scope: int = 0  # of the scored: judged out of scope (label OUT_OF_SCOPE); not failures
    workers: int = 0  # decoding threads the run used in this process (none on a Ray cluster)
    drift: DriftVerdict | None = (
        None  # the scans of this run against the card's drift reference; None under MIN_SCANS or without one
    )

    @property
    def rate(self) -> float:
        """Files scored a second, over the whole run."""
        return self.scored / self.seconds if self.seconds else 0.0


def score_folder(
    folder: Path,
    output: Path | str,
    options: ScoreOptions = ScoreOptions(),
    *,
    on_event: Callable[[Event], None] | None = None,
    scorer: Scorer | None = None,
) -> ScoreSummary:
    """Score every scan below a folder into a results CSV, resuming it if it exists.

    No warning is printed: each is told as a `Warned` event, every time it occurs.

    Args:
        folder: The folder to score.
        output: The results CSV; `-` is standard output.
        options: How to score.
        on_event: Told each event of the run as it happens (files not scanned, rows written, warnings).
        scorer: A model already loaded, to score several folders without loading it again; by default
            the weights of `options.weights` are loaded.

    Returns:
        The run's summary.

    Raises:
        UsageError: The folder, the options, the results file or the calibration cannot be used
            (OptionError, ResultsFileError, ResultsLockedError among them).
        RunError: The run cannot start or go on (ResultsWriteError, WeightsError).
    """
    if scorer is not None and options.weights is not None:
        raise OptionError("give score_folder a scorer or options.weights, not both")
    if scorer is not None and options.ray:
        raise OptionError("a scorer scores in this process: give score_folder a scorer or options.ray, not both")
    started = time.monotonic()
    notify = on_event or (lambda event: None)
    folder, output = Path(folder), str(output)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    found = find_scans(folder)
    for path, reason in found.not_scanned:
        notify(NotScanned(path, reason))
    # The card alone plans the run: a results file that must not be touched is refused before the model loads.
    card = scorer.card if scorer is not None else read_card(options.weights or default_weights_dir())
    site = _site(options.calibration, card.model_id)
    threshold = options.threshold_or(site.calibration.threshold if site else card.threshold)
    model_id = site.model_id() if site else card.model_id
    with ExitStack() as held:
        if output != "-":
            held.enter_context(results_lock(Path(output), options.wait, on_wait=lambda lock: notify(Waiting(lock))))
        held.enter_context(warnings_kept())
        held.enter_context(native_messages_kept())
        raised = held.enter_context(collected())
        results = held.enter_context(
            open_results(
                output,
                model_id,
                threshold,
                options.overwrite,
                options.dicom.tags,
                rescore_skipped=not options.dicom.frontal_only,
            )
        )
        if results.repaired:
            notify(Repaired(output))
        try:
            to_score = results.plan(found.scans, folder, read_header_tags)
            journal = held.enter_context(InFlightJournal(Path(output))) if output != "-" else None
            score, notes = _row_source(options, site, scorer)
            for note in notes:
                notify(Notice(note))
            notify(Planned(len(to_score), results.tally.unchanged))
            measured = Measured()
            for rows in _score_rows(to_score, score, options, results, journal, threshold, model_id):
                results.write(rows)
                measured.add(rows)
                _tell(notify, raised)
                notify(RowsWritten(rows))
            results.finish()
            if journal is not None:
                journal.close(keep={results.identity(scan)[KEY_COLUMN] for scan in found.scans})
        except OSError as error:
            raise ResultsWriteError(f"cannot write results to {output}: {error.strerror or error}") from None
        _tell(notify, raised)
    summary = _summary(
        folder,
        output,
        len(found.scans),
        results.tally,
        time.monotonic() - started,
        0 if options.ray else options.decoding_threads(),
    )
    if card.drift and measured.scans >= MIN_SCANS:
        # A site calibration moves the model's score away from the card's reference: that statistic is left out.
        summary = replace(
            summary, drift=judge(measured.values(with_probability=site is None), card.drift.statistics, measured.scans)
        )
    return summary


class Measured:
    """The drift statistics of the rows a run scored (xscan.stats.drift), gathered as they are written."""

    def __init__(self) -> None:
        """Start with no rows."""
        self.scans = 0
        self._records: list[dict[str, str]] = []

    def add(self, rows: list[Row]) -> None:
        """Gather the statistics of the scored rows of a batch (those with an error have none)."""
        for row in rows:
            if row.probability is not None and not row.error:
                self.scans += 1
                record = row.as_record()
                self._records.append({name: record.get(name, "") for name in ("probability", *MEASURE_COLUMNS)})

    def values(self, with_probability: bool = True) -> dict[str, np.ndarray]:
        """Give each statistic's values so far, as `xscan.scoring.results.drift_values` does.

        Args:
            with_probability: Include the model's score (off under a site calibration).

        Returns:
            Per statistic's column, its values.
        """
        return drift_values(self._records, with_probability)


def _tell(notify: Callable[[Event], None], raised: list[FileWarning]) -> None:
    """Tell the warnings raised so far, and forget them."""
    told, raised[:] = list(raised), []
    for warning in told:
        notify(Warned(warning))


def _site(calibration: Path | None, model_id: str) -> LoadedSite | None:
    if calibration is None:
        return None
    from xscan.model.site_calibration import load_site

    return load_site(calibration, model_id)  # a SiteCalibrationError is a UsageError: exit 2


# Planned paths in, the rows of each batch out, in order; told each file while it is decoded where it can be (Watch).
RowSource = Callable[[Sequence[Path], ScoreOptions, Watch | None], Iterator[list[Row]]]


def _row_source(options: ScoreOptions, site: LoadedSite | None, scorer: Scorer | None) -> tuple[RowSource, list[str]]:
    """What scores the planned files, and its notes for the user: the model here, or on a Ray cluster (options.ray)."""
    if options.ray:
        from xscan.scoring.ray_driver import RayScoring  # Ray is imported there, and only with options.ray

        cluster = RayScoring.connect(
            options.weights, address=options.ray_address, scope_check=options.scope_check, site=site
        )
        return lambda paths, asked, watch: cluster.score_paths(paths, asked), cluster.notes
    if scorer is None:
        scorer = load_scorer(options.weights, scope_check=options.scope_check, site=site)
    else:
        scorer = _as_asked(scorer, options, site)
    return lambda paths, asked, watch: score_paths(paths, scorer, asked, watch=watch), scorer.notes


def _as_asked(scorer: Scorer, options: ScoreOptions, site: LoadedSite | None) -> Scorer:
    """A preloaded SCORER with the run's site calibration, and without its scope check if the run turns it off."""
    if not options.scope_check and scorer.scope_check is not None:
        scorer = replace(scorer, scope_check=None)
    if site != scorer.site:
        scorer = replace(scorer, site=site)
    return scorer


def _score_rows(
    to_score: Sequence[Path],
    score: RowSource,
    options: ScoreOptions,
    results: StreamResults,
    journal: InFlightJournal | None,
    threshold: float,
    model_id: str,
) -> Iterator[list[Row]]:
    """The rows of TO_SCORE, batch by batch; with a journal, files that crashed a run are treated apart.

    A file in flight when two runs died (or ended with an unexpected exception) is not opened: its row says so.
    One in flight when one run died is decoded alone, before the others, so that if it crashes again no other
    file shares the blame. (On a Ray cluster the workers' files are not watched: a crash there is Ray's to retry.)
    """
    if journal is None:
        yield from score(to_score, options, None)
        return
    crashes = {scan: journal.crashes(results.identity(scan)) for scan in to_score}
    poisoned = [scan for scan in to_score if crashes[scan] >= CRASHES_TO_SKIP]
    if poisoned:
        yield [
            Row(
                str(scan),
                None,
                threshold,
                model_id,
                journal.skip_reason(results.identity(scan)),
                dict.fromkeys(options.dicom.tags, ""),
            )
            for scan in poisoned
        ]

    def watch(scan: Path) -> AbstractContextManager[None]:
        return journal.in_flight(results.identity(scan))

    suspects = [scan for scan in to_score if crashes[scan] == 1]
    yield from score(suspects, replace(options, workers=1), watch)
    yield from score([scan for scan in to_score if crashes[scan] == 0], options, watch)


def _summary(folder: Path, output: str, found: int, tally: Tally, seconds: float, workers: int) -> ScoreSummary:
    # Files skipped by policy (a CT, a lateral film) are what the policy asks for, not a failure; nor are out-of-scope.
    code = EXIT_SOME_FAILED if tally.failed else EXIT_OK
    return ScoreSummary(
        folder,
        output,
        found,
        tally.scored,
        tally.failed,
        tally.skipped,
        tally.unchanged,
        seconds,
        code,
        tally.out_of_scope,
        workers,
    )
