"""The offline review page of `xscan report --html`: the report's numbers and plots, and galleries of scans with heatmaps.

The folder it writes holds `index.html`, `plots/` and `images/` and nothing else is needed to
read it: no server, no network, no script; every link is a relative file.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from xscan.about import DISCLAIMER
from xscan.errors import ScanError
from xscan.explain.cam import LONG_SIDE, Explainer
from xscan.explain.overlay import annotate, blend, colour_scale, display_scan, write_png
from xscan.reporting.drift import DriftUsageError, drift_of_results
from xscan.reporting.galleries import Entry, Gallery, choose_galleries
from xscan.reporting.labels import GroundTruth
from xscan.reporting.plots import write_plots
from xscan.reporting.report import Report
from xscan.reporting.view import METRICS, number
from xscan.scoring.results import NEGATIVE, POSITIVE, read_table
from xscan.stats.drift import DriftVerdict

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


@dataclass
class ReviewPage:
    index: Path
    galleries: list[Gallery]
    pictures: dict[str, Picture]  # by the row's path
    seconds: float  # the whole page
    heatmap_seconds: float  # of which: loading the model, computing and drawing the gallery's images
    notes: list[str] = field(default_factory=list)
    drift: DriftVerdict | str = ""  # the verdict on the results' last run, or why there is none


def write_review_page(
    report: Report,
    source: Path,
    folder: Path,
    truth: GroundTruth | None,
    gallery_size: int = GALLERY_SIZE,
    weights: Path | None = None,
) -> ReviewPage:
    """Write FOLDER/index.html for REPORT (made from the results CSV SOURCE), with its plots and gallery images.

    Heatmaps are computed for the scans the galleries show and no others, with the model in
    WEIGHTS (default: the bundled one); when the results come from another model the scans are
    shown without heatmaps and the page says so. The page shows `xscan drift`'s verdict on the
    results' last run against the card in WEIGHTS, or why it could not be judged.
    """
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    records = read_table(source).records
    galleries = choose_galleries(records, report.threshold, truth, gallery_size)
    plots = [path.name for path in write_plots(report, folder / PLOTS)]
    drawing = time.monotonic()
    shown = list({entry.path: entry for gallery in galleries for entry in gallery.entries}.values())
    models = sorted({record["model"] for record in records})
    pictures, notes = draw_pictures(shown, source, folder, report.threshold, models, weights)
    heatmap_seconds = time.monotonic() - drawing
    drift = drift_or_reason(source, weights)
    index = folder / INDEX
    page = render_page(report, galleries, pictures, plots, models, notes, drift)
    index.write_text(page, encoding="utf-8", errors="replace")  # a path that is not UTF-8 shows with a replacement mark
    return ReviewPage(index, galleries, pictures, time.monotonic() - started, heatmap_seconds, notes, drift)


def drift_or_reason(source: Path, weights: Path | None) -> DriftVerdict | str:
    """The drift verdict on SOURCE's last run, or why it cannot be judged (too few scans, older columns): a page, not an error."""
    try:
        return drift_of_results(source, weights)
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
    if CAM not in scorer.card.litert.get("outputs", {}):
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

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 0 1.5em 3em; color: #1b1b1b; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { margin-bottom: 0.2em; }
.disclaimer { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5em 0.8em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.6em 0; } td, th { padding: 0.25em 0.7em; border-bottom: 1px solid #e3e3e3; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
.headline { display: flex; gap: 1.5em; flex-wrap: wrap; }
.headline div { background: #f3f5f8; padding: 0.6em 1em; border-radius: 6px; }
.headline strong { display: block; font-size: 1.6em; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; } .plots figure { margin: 0; } .plots img { width: 360px; height: auto; }
.thumbs { display: flex; flex-wrap: wrap; gap: 0.8em; }
figure.scan { margin: 0; width: 200px; background: #f6f6f6; padding: 4px; border-radius: 4px; }
figure.scan img { display: block; margin: 0 auto; background: #000; }
figure.scan figcaption { font-size: 12px; overflow-wrap: anywhere; }
.noimage { height: 120px; display: flex; align-items: center; justify-content: center; color: #777; background: #e9e9e9; }
.PNEUMONIA { color: #b3261e; font-weight: 600; } .NORMAL { color: #1d6b2f; font-weight: 600; } .OUT_OF_SCOPE { color: #6b4e00; }
.empty { color: #666; font-style: italic; }
"""


def render_page(
    report: Report,
    galleries: list[Gallery],
    pictures: dict[str, Picture],
    plots: list[str],
    models: list[str],
    notes: list[str],
    drift: DriftVerdict | str = "",
) -> str:
    """The page as one HTML document; every value is escaped."""
    source = report.source or "results"
    sections = [
        _header(report, models),
        _drift(drift),
        _metrics(report),
        _plots(plots),
        _operating_points(report),
        _notes([*report.notes, *notes]),
        '<section id="galleries"><h2>Scans to review</h2>'
        "<p>The heatmap (Grad-CAM) shows where the model found evidence for pneumonia, in coarse cells; it shows where, "
        "not why. A thumbnail opens the full-size overlay with its colour bar.</p>"
        + "".join(_gallery(gallery, pictures) for gallery in galleries)
        + "</section>",
    ]
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>xscan review: {_e(source)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>\n'
        f"<body>\n{''.join(sections)}\n</body></html>\n"
    )


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _header(report: Report, models: list[str]) -> str:
    threshold_from = "--threshold" if report.threshold_source == "option" else "the CSV"
    truth = f"ground truth from {_e(report.labels_from)}" if report.labels_from else "no ground truth given"
    sections = (
        ("drift", "metrics", "plots", "operating-points", "notes", "galleries")
        if report.evaluation
        else ("drift", "metrics", "plots", "notes", "galleries")
    )
    links = "".join(f'<a href="#{name}">{name.replace("-", " ")}</a>' for name in sections)
    return (
        f'<header><h1>xscan review</h1><p class="disclaimer">{_e(DISCLAIMER)} Every result must be read by a qualified '
        f"clinician.</p><p><strong>{_e(report.source)}</strong>: {report.summary.rows} rows; model {_e(', '.join(models))}; "
        f"threshold {report.threshold:.6f} from {threshold_from}; {truth}.</p><nav>{links}</nav></header>"
    )


def _metrics(report: Report) -> str:
    evaluation = report.evaluation
    if evaluation is None:
        predicted = report.summary.predicted
        return (
            '<section id="metrics"><h2>Predicted labels</h2><table><tr><th class="number">predicted PNEUMONIA</th>'
            '<th class="number">predicted NORMAL</th><th class="number">errors</th><th class="number">rows</th></tr>'
            f'<tr><td class="number">{predicted[POSITIVE]}</td><td class="number">{predicted[NEGATIVE]}</td>'
            f'<td class="number">{len(report.summary.errors)}</td><td class="number">{report.summary.rows}</td></tr></table>'
            "</section>"
        )
    m, intervals = evaluation.metrics, evaluation.intervals
    headline = "".join(
        f"<div>{_e(name)}<strong>{number(m[key])}</strong>{_interval(intervals[key].low, intervals[key].high)}</div>"
        for key, name, _ in METRICS
        if key in ("sensitivity", "specificity", "auc")
    )
    rows = "".join(
        f'<tr><td>{_e(name)}</td><td class="number">{number(m[key])}</td>'
        f'<td class="number">{_interval(intervals[key].low, intervals[key].high)}</td><td>{_e(meaning)}</td></tr>'
        for key, name, meaning in METRICS
    )
    confusion = (
        '<table id="confusion"><tr><th></th><th class="number">predicted PNEUMONIA</th><th class="number">predicted NORMAL</th>'
        '<th class="number">total</th></tr>'
        f'<tr><th>actual PNEUMONIA</th><td class="number">{m["tp"]}</td><td class="number">{m["fn"]}</td>'
        f'<td class="number">{m["tp"] + m["fn"]}</td></tr>'
        f'<tr><th>actual NORMAL</th><td class="number">{m["fp"]}</td><td class="number">{m["tn"]}</td>'
        f'<td class="number">{m["fp"] + m["tn"]}</td></tr>'
        f'<tr><th>total</th><td class="number">{m["tp"] + m["fp"]}</td><td class="number">{m["fn"] + m["tn"]}</td>'
        f'<td class="number">{m["n"]}</td></tr></table>'
    )
    return (
        f'<section id="metrics"><h2>Metrics at the threshold</h2><div class="headline">{headline}</div>'
        f"<h3>Confusion matrix</h3>{confusion}"
        f"<h3>All metrics, 95 % intervals (Wilson; bootstrap of {report.bootstrap})</h3>"
        f'<table><tr><th>metric</th><th class="number">value</th><th class="number">95 % interval</th><th>meaning</th></tr>'
        f"{rows}</table></section>"
    )


def _drift(drift: DriftVerdict | str) -> str:
    if not isinstance(drift, DriftVerdict):
        return f'<section id="drift" data-drifted="unknown"><h2>Drift</h2><p>Not judged: {_e(drift or "no verdict")}</p></section>'
    rows = "".join(
        f"<tr><td>{'DRIFT' if finding.drifted else 'ok'}</td><td>{_e(finding.describe())}</td></tr>"
        for finding in drift.findings
    )
    left_out = "".join(f"<li>not tested: {_e(reason)}</li>" for reason in drift.left_out)
    return (
        f'<section id="drift" data-drifted="{str(drift.drifted).lower()}"><h2>Drift</h2>'
        f"<p><strong>{_e(drift.summary())}</strong> (as <code>xscan drift</code> judges the results' last run)</p>"
        f"<table><tr><th>verdict</th><th>statistic</th></tr>{rows}</table>"
        + (f"<ul>{left_out}</ul>" if left_out else "")
        + "</section>"
    )


def _interval(low: float, high: float) -> str:
    return "" if math.isnan(low) else f"{number(low)}&ndash;{number(high)}"


def _plots(plots: Iterable[str]) -> str:
    figures = "".join(
        f'<figure><img src="{PLOTS}/{_e(name)}" alt="{_e(PLOT_TITLES.get(name, name))}"></figure>'
        for name in PLOT_TITLES
        if name in plots
    )
    return f'<section id="plots"><h2>Plots</h2><div class="plots">{figures}</div></section>'


def _operating_points(report: Report) -> str:
    if report.evaluation is None:
        return ""
    head = "".join(
        f'<th class="number">{name}</th>'
        for name in ("threshold", "sensitivity", "specificity", "PPV", "NPV", "TP", "FP", "TN", "FN")
    )
    rows = "".join(
        f'<tr><td>{_e(point.rule)}</td><td class="number">{point.threshold:.6f}</td>'
        + "".join(
            f'<td class="number">{number(value)}</td>'
            for value in (point.sensitivity, point.specificity, point.precision, point.npv)
        )
        + "".join(f'<td class="number">{value}</td>' for value in (point.tp, point.fp, point.tn, point.fn))
        + "</tr>"
        for point in report.evaluation.operating_points
    )
    return (
        '<section id="operating-points"><h2>Operating points</h2><p>A sensitive threshold screens, a specific one '
        f"confirms.</p><table><tr><th>rule</th>{head}</tr>{rows}</table></section>"
    )


def _notes(notes: list[str]) -> str:
    items = "".join(f"<li>{_e(note)}</li>" for note in notes) or "<li>none</li>"
    return f'<section id="notes"><h2>Notes</h2><ul>{items}</ul></section>'


def _gallery(gallery: Gallery, pictures: dict[str, Picture]) -> str:
    shown = len(gallery.entries)
    figures = "".join(_figure(entry, pictures.get(entry.path)) for entry in gallery.entries)
    body = (
        f'<div class="thumbs">{figures}</div>' if shown else ('<p class="empty">None.</p>' if not gallery.total else "")
    )
    return (
        f'<section class="gallery" id="{gallery.key}" data-gallery="{gallery.key}" data-total="{gallery.total}" '
        f'data-shown="{shown}"><h3>{_e(gallery.title)}</h3><p>{shown} shown of {gallery.total}; {_e(gallery.order)}.</p>'
        f"{body}</section>"
    )


def _figure(entry: Entry, picture: Picture | None) -> str:
    if picture is None:
        image = '<div class="noimage">no image</div>'
    else:
        image = (
            f'<a href="{_e(picture.full)}"><img src="{_e(picture.thumbnail)}" width="{picture.width}" '
            f'height="{picture.height}" alt="{_e(entry.path)}"></a>'
        )
    probability = "" if entry.probability is None else f"probability {entry.probability:.6f} "
    label = f'<span class="{_e(entry.label)}">{_e(entry.label)}</span>' if entry.label else ""
    truth = "" if entry.truth is None else f"; truth {POSITIVE if entry.truth else NEGATIVE}"
    note = f"<br>{_e(entry.note)}" if entry.note else ""
    return (
        f'<figure class="scan" data-path="{_e(entry.path)}">{image}<figcaption>{_e(entry.path)}<br>'
        f"{probability}{label}{truth}{note}</figcaption></figure>"
    )
