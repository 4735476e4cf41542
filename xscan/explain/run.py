"""`explain_paths`: everything `xscan explain` does as one library call (plan, load, draw, write explain.csv); it prints nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from xscan.errors import EXIT_OK, EXIT_SOME_FAILED, ResultsWriteError, UsageError
from xscan.explain.gradcam import EXPLAIN_COLUMNS, EXPLAIN_CSV, LONG_SIDE, Explainer, overlay_plan, write_overlays
from xscan.model.scorer import Scorer, load_scorer
from xscan.scoring.results import ResultsWriter
from xscan.scoring.run import Event, NotScanned, Planned, RowsWritten


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
        return EXIT_SOME_FAILED if self.failed else EXIT_OK


def explain_paths(
    paths: Sequence[Path],
    output: Path,
    options: ExplainOptions = ExplainOptions(),
    *,
    scorer: Scorer | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> ExplainSummary:
    """Draw a Grad-CAM overlay of each scan in PATHS (files, or folders walked as `score` walks them) into OUTPUT.

    Writes OUTPUT/<path below the folder>.png and OUTPUT/explain.csv (score's columns, then `overlay`).
    ON_EVENT hears what the walk passed over (NotScanned), the plan (Planned) and each batch's rows
    (RowsWritten). A missing path or two scans that would share an overlay is a UsageError before any
    work; weights that do not load a WeightsError; an output that cannot be written a ResultsWriteError.
    SCORER, when given, is used instead of loading OPTIONS.weights.
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
