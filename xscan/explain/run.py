"""`explain_paths`: all `xscan explain` does, one library call (plan, load, draw, write explain.csv); prints nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from xscan.errors import EXIT_OK, EXIT_SOME_FAILED, ResultsWriteError, ScanError, UsageError
from xscan.explain.cam import LONG_SIDE, Explainer
from xscan.explain.overlay import write_png
from xscan.input.walk import find_scans
from xscan.model.scorer import Scorer, load_scorer
from xscan.scoring.results import COLUMNS, FINGERPRINT_COLUMNS, ResultsWriter, Row
from xscan.scoring.resume import fingerprint
from xscan.scoring.run import Event, NotScanned, Planned, RowsWritten

OVERLAY_COLUMN = "overlay"  # explain.csv: the PNG's path, relative to the output folder
EXPLAIN_CSV = "explain.csv"
EXPLAIN_COLUMNS = (
    *COLUMNS,
    *FINGERPRINT_COLUMNS,
    OVERLAY_COLUMN,
)  # score's columns but resolved_path, then the overlay


@dataclass(frozen=True, kw_only=True)
class ExplainOptions:
    """How to explain: every setting of `xscan explain` that is not about printing or logging."""

    long_side: int = LONG_SIDE  # pixels on the longer side of each overlay
    threshold: float | None = None  # decision threshold in the captions; None: the model card's
    workers: int = 0  # decoding threads; 0: one per CPU this process may use
    weights: Path | None = None  # weights folder; None: the bundled model


@dataclass(frozen=True)
class ExplainSummary:
    """How an explain run went, and the exit code `xscan explain` ends with."""

    output: Path
    drawn: int
    failed: int
    seconds: float

    @property
    def exit_code(self) -> int:
        """Give 4 (some files failed) when a file could not be drawn, else 0."""
        return EXIT_SOME_FAILED if self.failed else EXIT_OK


def explain_paths(
    paths: Sequence[Path],
    output: Path,
    options: ExplainOptions = ExplainOptions(),
    *,
    scorer: Scorer | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> ExplainSummary:
    """Draw a heatmap overlay of each scan into a folder.

    Writes <output>/<path below the folder>.png and <output>/explain.csv (score's columns, then `overlay`).

    Args:
        paths: Files, or folders walked as `score` walks them.
        output: The folder the overlays and explain.csv go to.
        options: The weights, sizes and workers of the run.
        scorer: A loaded model, used instead of loading options.weights.
        on_event: Hears what the walk passed over (NotScanned), the plan (Planned) and each batch's
            rows (RowsWritten).

    Returns:
        How the run went, with its exit code.

    Raises:
        UsageError: A missing path, or two scans that would share an overlay; before any work.
        WeightsError: The weights do not load.
        ResultsWriteError: The output cannot be written.
    """
    tell = on_event or (lambda event: None)
    missing = [path for path in paths if not path.exists()]
    if missing:
        raise UsageError(f"{missing[0]} does not exist")
    started = time.monotonic()
    plan, skipped = overlay_plan(paths)
    for path, why in skipped:
        tell(NotScanned(path, why))
    explainer = Explainer(scorer or load_scorer(options.weights))
    threshold = explainer.scorer.threshold if options.threshold is None else options.threshold
    tell(Planned(to_score=len(plan), unchanged=0))
    drawn = failed = 0
    try:
        output.mkdir(parents=True, exist_ok=True)
        with ResultsWriter(output / EXPLAIN_CSV, EXPLAIN_COLUMNS) as writer:
            for rows in write_overlays(plan, explainer, output, options.long_side, threshold, options.workers or None):
                writer.write(rows)
                failed += sum(1 for row in rows if row.error)
                drawn += sum(1 for row in rows if not row.error)
                tell(RowsWritten(rows))
    except OSError as error:
        raise ResultsWriteError(f"cannot write to {output}: {error.strerror or error}") from None
    return ExplainSummary(output, drawn, failed, time.monotonic() - started)


class OverlayClashError(UsageError, ValueError):
    """Two scans would write the same overlay file."""


def overlay_plan(inputs: Sequence[Path]) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Each scan to explain with its overlay's path relative to the output folder, and what the walks skipped.

    A folder is walked as `xscan score` walks it and a scan below it gets `<path below the
    folder>.png`; a file given by name gets `<its name>.png`, whatever its extension. Two scans
    that would share an overlay are an OverlayClashError, before any work.
    """
    plan: list[tuple[Path, Path]] = []
    skipped: list[tuple[Path, str]] = []
    for given in inputs:
        if given.is_dir():
            found = find_scans(given)
            skipped += found.not_scanned
            plan += [(scan, scan.relative_to(given).with_name(scan.name + ".png")) for scan in found.scans]
        else:
            plan.append((given, Path(given.name + ".png")))
    owners: dict[Path, Path] = {}
    for scan, overlay in plan:
        if overlay in owners:
            raise OverlayClashError(
                f"{owners[overlay]} and {scan} would both be drawn to {overlay}; explain them into separate folders"
            )
        owners[overlay] = scan
    return plan, skipped


def write_overlays(
    plan: Sequence[tuple[Path, Path]],
    explainer: Explainer,
    folder: Path,
    long_side: int,
    threshold: float,
    workers: int | None = None,
) -> Iterator[list[Row]]:
    """Draw each planned scan's overlay and yield its rows a batch at a time, as `xscan score` would.

    A file that cannot be read is an error row and the run goes on.

    Args:
        plan: (scan, overlay path below the folder) pairs.
        explainer: The loaded model's explainer.
        folder: The folder the overlays are written below.
        long_side: The overlays' longer side in pixels.
        threshold: The decision threshold of the rows' labels.
        workers: The decoding threads, as in scoring.

    Yields:
        A batch's rows: score's columns, then OVERLAY_COLUMN.

    Raises:
        OSError: A PNG cannot be written.
    """
    overlay_of = dict(plan)
    model_id = explainer.scorer.card.model_id
    for explanations in explainer.explain([scan for scan, _ in plan], workers):
        rows = []
        for explanation in explanations:
            extra = fingerprint(explanation.path) | {OVERLAY_COLUMN: ""}
            error = explanation.error
            if not error:
                try:
                    image = explainer.overlay(explanation, long_side, threshold)
                except ScanError as failure:  # the file changed or vanished since it was scored
                    error = str(failure)
            if error:
                rows.append(Row(str(explanation.path), None, threshold, model_id, error, extra))
                continue
            write_png(image, folder / overlay_of[explanation.path])
            extra[OVERLAY_COLUMN] = str(overlay_of[explanation.path])
            rows.append(
                Row(str(explanation.path), explanation.probability, threshold, model_id, trailing_columns=extra)
            )
        yield rows
