"""The offline review page of `xscan report --html`: the report's numbers, plots, and galleries of scans with heatmaps.

The folder it writes holds `index.html`, `plots/` and `images/` and nothing else is needed to
read it: no server, no network, no script; every link is a relative file. The HTML comes from the
Jinja2 templates in `templates/` (one block per section), which escape every value they are given.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import cv2
import jinja2
import numpy as np

from xscan.about import DISCLAIMER
from xscan.errors import ScanError
from xscan.explain.cam import LONG_SIDE, Explainer
from xscan.explain.overlay import annotate, blend, colour_scale, display_scan, write_png
from xscan.reporting.drift import DriftUsageError, drift_of_rows
from xscan.reporting.galleries import Entry, Gallery, choose_galleries
from xscan.reporting.labels import GroundTruth
from xscan.reporting.plots import write_plots
from xscan.reporting.report import Report
from xscan.reporting.view import METRICS, number
from xscan.scoring.results import NEGATIVE, POSITIVE, Row
from xscan.stats.drift import DriftVerdict
from xscan.stats.intervals import Interval

INDEX = "index.html"
IMAGES = "images"
PLOTS = "plots"
GALLERY_SIZE = 12  # scans per gallery unless asked otherwise
THUMBNAIL_SIDE = 192  # pixels on a thumbnail's longer side
PLOT_TITLES = {
    "confusion-matrix.png": "confusion matrix",
    "roc.png": "ROC curve",
    "precision-recall.png": "precision-recall curve",
    "calibration.png": "calibration",
    "histogram.png": "probabilities",
}


@dataclass(frozen=True)
class Picture:
    """A gallery scan's two images, relative to the page: the thumbnail and the full-size overlay it links to."""

    thumbnail: str
    full: str
    width: int  # of the thumbnail
    height: int
    heatmap: bool


@dataclass(frozen=True)
class AuditBlock:
    """What the page shows of `xscan audit` (xscan.audit.page makes it): its verdict, a row per period, its plot."""

    verdict: str  # "holds", "broken" or "too few reads to tell"
    summary: str
    promise: list[str]  # one line per promised figure, with its source
    columns: list[str]
    rows: list[list[str]]
    plot: str = ""  # the plot's path relative to the page; "" without one


@dataclass
class ReviewPage:
    """What `write_review_page` wrote: the page, its galleries and pictures, how long it took, its notes and verdict."""

    index: Path
    galleries: list[Gallery]
    pictures: dict[str, Picture]  # by the row's path
    seconds: float  # the whole page
    heatmap_seconds: float  # of which: loading the model, computing and drawing the gallery's images
    notes: list[str] = field(default_factory=list)
    drift: DriftVerdict | str = ""  # the verdict on the results' last run, or why there is none


def write_review_page(
    report: Report,
    rows: Sequence[Row],
    source: Path,
    folder: Path,
    truth: GroundTruth | None,
    gallery_size: int = GALLERY_SIZE,
    weights: Path | None = None,
    audit: AuditBlock | None = None,
) -> ReviewPage:
    """Write FOLDER/index.html for REPORT, with its plots and gallery images.

    Heatmaps are computed for the scans the galleries show and no others; when the results come
    from another model than WEIGHTS' the scans are shown without heatmaps and the page says so. The
    page shows `xscan drift`'s verdict on the results' last run, or why it could not be judged, and the
    audit when given.

    Args:
        report: the report on ROWS.
        rows: the rows of the results CSV, as read once for the whole command (`report.read_results`).
        source: the results CSV, which names the page and beside which relative paths are found.
        folder: where the page goes (made if missing).
        truth: the ground truth, if any: it chooses the galleries.
        gallery_size: the most scans a gallery shows.
        weights: the weights folder for the heatmaps and the drift reference (default: the bundled model).
        audit: what `xscan audit` found against radiologists' reads (`report --html --reads`), if given.

    Returns:
        What was written, with its timings and notes.
    """
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    galleries = choose_galleries(rows, report.threshold, truth, gallery_size)
    plots = [path.name for path in write_plots(report, folder / PLOTS)]
    drawing = time.monotonic()
    shown = list({entry.path: entry for gallery in galleries for entry in gallery.entries}.values())
    models = sorted({row.model for row in rows})
    pictures, notes = draw_pictures(shown, source, folder, report.threshold, models, weights)
    heatmap_seconds = time.monotonic() - drawing
    drift = drift_or_reason(rows, source, weights)
    index = folder / INDEX
    page = render_page(report, galleries, pictures, plots, models, notes, drift, audit)
    index.write_text(page, encoding="utf-8", errors="replace")  # a path that is not UTF-8 shows with a replacement mark
    return ReviewPage(index, galleries, pictures, time.monotonic() - started, heatmap_seconds, notes, drift)


def drift_or_reason(rows: Sequence[Row], source: Path, weights: Path | None) -> DriftVerdict | str:
    """The drift verdict on the last run of ROWS (read from SOURCE), or why it cannot be judged: a page, not an error.

    Args:
        rows: the rows of the results.
        source: their file, named in the reason.
        weights: the weights folder whose card holds the drift reference.

    Returns:
        The verdict, or the reason there is none (too few scans, older columns).
    """
    try:
        return drift_of_rows(rows, source, weights)
    except DriftUsageError as error:
        return str(error)


def draw_pictures(
    entries: list[Entry],
    source: Path,
    folder: Path,
    threshold: float,
    models: list[str],
    weights: Path | None,
) -> tuple[dict[str, Picture], list[str]]:
    """Thumbnail and full-size image of each entry into FOLDER/images; heatmaps where the entry was scored.

    A file that cannot be read gets no picture (the gallery shows why); notes say what was left out.

    Args:
        entries: the scans the galleries show, each once.
        source: the results CSV, beside which relative paths are found.
        folder: the page's folder.
        threshold: the report's threshold, for the overlays' captions.
        models: the results' model ids: heatmaps only when the loaded model is one of them.
        weights: the weights folder to load (default: the bundled model).

    Returns:
        Each drawn entry's pictures by path, and notes for the reader.
    """
    where = {entry.path: _locate(entry.path, source) for entry in entries}
    scored = [entry for entry in entries if entry.probability is not None]
    pictures: dict[str, Picture] = {}
    notes: list[str] = []
    explainer = _explainer(weights, models, notes) if scored else None
    if explainer is not None:
        by_location = {where[entry.path]: entry.path for entry in scored}
        for explanations in explainer.explain(by_location):
            for explanation in explanations:
                if explanation.error:
                    continue
                try:
                    grey, heat = explainer.picture(explanation, LONG_SIDE)
                except ScanError:
                    continue
                scale = colour_scale(heat)
                blended = blend(grey, heat, scale)
                full = annotate(blended, scale, explainer.caption(explanation, threshold))
                path = by_location[explanation.path]
                pictures[path] = _save(folder, len(pictures) + 1, blended, full, heatmap=True)
    for entry in entries:
        if entry.path not in pictures:
            try:
                plain = blend(display_scan(where[entry.path], LONG_SIDE), None)
            except ScanError:
                continue
            pictures[entry.path] = _save(folder, len(pictures) + 1, plain, plain, heatmap=False)
    missing = [entry.path for entry in entries if entry.path not in pictures]
    if missing:
        notes.append(f"{len(missing)} gallery scan(s) could not be read from disk and are shown without an image")
    return pictures, notes


def _explainer(weights: Path | None, models: list[str], notes: list[str]) -> Explainer | None:
    from xscan.model.network import CAM
    from xscan.model.scorer import litert_command, load_scorer

    scorer = load_scorer(weights)
    if scorer.card.model_id not in models:
        notes.append(
            f"no heatmaps: the results come from model {', '.join(models)}, the loaded model is "
            f"{scorer.card.model_id} (pass --weights with the results' model to draw them)"
        )
        return None
    if not scorer.card.litert or CAM not in scorer.card.litert.outputs:
        notes.append(
            f"no heatmaps: the model's LiteRT file has no heatmap output; write it again with: "
            f"{litert_command(scorer.weights_dir or Path('WEIGHTS'))}"
        )
        return None
    return Explainer(scorer)


def _locate(path: str, source: Path) -> Path:
    """PATH as written in the CSV; a relative path that is not there is tried against the CSV's own folder."""
    written = Path(path)
    if written.exists() or written.is_absolute():
        return written
    beside = source.parent / written
    return beside if beside.exists() else written


def _save(folder: Path, number: int, blended: np.ndarray, full: np.ndarray, heatmap: bool) -> Picture:
    height, width = blended.shape[:2]
    factor = THUMBNAIL_SIDE / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    thumbnail = cv2.resize(blended, size, interpolation=cv2.INTER_AREA)
    names = (f"{IMAGES}/{number:04d}-thumb.png", f"{IMAGES}/{number:04d}.png")
    write_png(thumbnail, folder / names[0])
    write_png(full, folder / names[1])
    return Picture(names[0], names[1], size[0], size[1], heatmap)


# ---- HTML -------------------------------------------------------------------------------------------------

TEMPLATE = "review.html.j2"  # in xscan/reporting/templates/, with the macros and the stylesheet it includes


@cache
def _templates() -> jinja2.Environment:
    """The page's templates, escaping every value they are given (autoescape), failing on a name they are not."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("xscan.reporting", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["number"] = number
    environment.filters["fixed"] = lambda value: f"{value:.6f}"
    environment.filters["interval"] = _interval
    return environment


def _interval(interval: Interval) -> str:
    return "" if math.isnan(interval.low) else f"{number(interval.low)}\u2013{number(interval.high)}"


def render_page(
    report: Report,
    galleries: list[Gallery],
    pictures: dict[str, Picture],
    plots: list[str],
    models: list[str],
    notes: list[str],
    drift: DriftVerdict | str = "",
    audit: AuditBlock | None = None,
) -> str:
    """The page as one HTML document, every value escaped.

    Args:
        report: the report on the results.
        galleries: the galleries, in page order.
        pictures: each shown scan's images, by its row's path.
        plots: the names of the plot files written into PLOTS.
        models: the results' model ids.
        notes: notes for the reader besides the report's own.
        drift: the drift verdict on the results' last run, or why there is none.
        audit: the audit against radiologists' reads, or None.

    Returns:
        The HTML text.
    """
    return (
        _templates()
        .get_template(TEMPLATE)
        .render(
            report=report,
            disclaimer=DISCLAIMER,
            models=models,
            metrics=METRICS,
            drift=drift if isinstance(drift, DriftVerdict) else None,
            drift_reason="" if isinstance(drift, DriftVerdict) else drift,
            audit=audit,
            plots=[(f"{PLOTS}/{name}", title) for name, title in PLOT_TITLES.items() if name in plots],
            notes=[*report.notes, *notes],
            galleries=galleries,
            pictures=pictures,
            positive=POSITIVE,
            negative=NEGATIVE,
        )
    )
