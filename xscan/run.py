"""`score_folder`: everything `xscan score` does, as one library call (walk, resume, score, write, summary); it prints nothing.

What happens along the way is told to an optional callback as events, in this order: each path
the walk passed over (`NotScanned`), a repaired results file (`Repaired`), the plan (`Planned`),
then the rows of each batch once written (`RowsWritten`), each preceded by the warnings raised
meanwhile (`Warned`): those its files raised while they were read, and any the run raised itself. A run that cannot start or go on raises
a `xscan.errors.RunError` (its `exit_code` says how `xscan score` exits); Ctrl-C propagates as
KeyboardInterrupt, and the next run resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xscan.card import default_weights_dir, read_card
from xscan.errors import EXIT_OK, EXIT_SOME_FAILED, ResultsWriteError, UsageError
from xscan.file_warnings import FileWarning, collected, warnings_kept
from xscan.options import ScoreOptions
from xscan.results import Row
from xscan.resume import Tally, open_results
from xscan.scorer import Scorer, load_scorer, native_stderr_silenced
from xscan.scoring import score_paths
from xscan.walk import find_scans


@dataclass(frozen=True)
class NotScanned:
    """A path the walk passed over (a broken link, a link loop, a pipe named like a scan)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Repaired:
    """The results file ended in a torn line, left by an interrupted run; it was dropped and its file is scored again."""

    output: str


@dataclass(frozen=True)
class Planned:
    """What the run will do: files to score now, and files unchanged since an earlier run."""

    to_score: int
    unchanged: int


@dataclass(frozen=True)
class Warned:
    """A warning raised while a file was read (pydicom's remarks on an odd file; `warning.path` names it), or by the run."""

    warning: FileWarning


@dataclass(frozen=True)
class RowsWritten:
    """The rows of one batch, written and flushed to the output."""

    rows: list[Row]


Event = NotScanned | Repaired | Planned | Warned | RowsWritten


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
    out_of_scope: int = 0  # there is no out-of-scope check yet, so none

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
    """Score every scan below FOLDER into the results CSV OUTPUT ('-': standard output), resuming it if it exists.

    SCORER is a model already loaded, to score several folders without loading it again; by
    default the weights of `options.weights` are loaded. No warning is printed: each is told as a
    `Warned` event, every time it occurs.
    """
    if scorer is not None and options.weights is not None:
        raise ValueError("give score_folder a scorer or options.weights, not both")
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
    threshold = options.threshold_or(card.threshold)
    results = open_results(output, card.model_id, threshold, options.overwrite, tag_columns=options.dicom.tags)
    if results.repaired:
        notify(Repaired(output))
    try:
        with results, warnings_kept(), collected() as raised:
            to_score = results.plan(found.scans)
            if scorer is None:
                with native_stderr_silenced():  # TensorFlow's C++ start-up notes: score_folder prints nothing
                    scorer = load_scorer(options.weights)
            notify(Planned(len(to_score), results.tally.unchanged))
            for rows in score_paths(to_score, scorer, options):
                results.write(rows)
                _tell(notify, raised)
                notify(RowsWritten(rows))
            results.finish()
    except OSError as error:
        raise ResultsWriteError(f"cannot write results to {output}: {error.strerror or error}") from None
    _tell(notify, raised)
    return _summary(folder, output, len(found.scans), results.tally, time.monotonic() - started)


def _tell(notify: Callable[[Event], None], raised: list[FileWarning]) -> None:
    """Tell the warnings raised so far, and forget them."""
    told, raised[:] = list(raised), []
    for warning in told:
        notify(Warned(warning))


def _summary(folder: Path, output: str, found: int, tally: Tally, seconds: float) -> ScoreSummary:
    # Files skipped by policy are error rows, and fail a run as unreadable files do.
    code = EXIT_SOME_FAILED if tally.failed or tally.skipped else EXIT_OK
    return ScoreSummary(folder, output, found, tally.scored, tally.failed, tally.skipped, tally.unchanged, seconds, code)
