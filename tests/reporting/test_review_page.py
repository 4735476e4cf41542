"""`xscan report --html`: the offline review page from real runs: its files, galleries, heatmaps only where shown."""

import csv
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from support.data import TRAIN, needs_data, real_scans
from support.processes import RUN_CLI, heavy_modules_after
from support.review import REVIEW_GALLERY, expected_galleries
from typer.testing import CliRunner

from xscan.cli import app
from xscan.reporting.labels import FolderLabels
from xscan.reporting.report import build_report, read_results
from xscan.reporting.review_page import write_review_page
from xscan.scoring.results import ResultsWriter, Row


class _Links(HTMLParser):
    """Every src and href of a page, and each gallery's attributes and figure count."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.galleries: dict[str, dict[str, str]] = {}
        self.figures: dict[str, int] = {}
        self._gallery = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [attrs[name] for name in ("src", "href") if name in attrs]
        if "data-gallery" in attrs:
            self._gallery = attrs["data-gallery"]
            self.galleries[self._gallery], self.figures[self._gallery] = attrs, 0
        if tag == "figure" and "data-path" in attrs:
            self.figures[self._gallery] += 1


def _parsed(page: Path) -> _Links:
    parser = _Links()
    parser.feed((page / "index.html").read_text(encoding="utf-8"))
    return parser


@pytest.mark.slow
def test_the_page_and_everything_it_links_to_are_in_its_folder(review_run):
    _, page, reported = review_run
    assert reported.exit_code == 0, reported.output
    links = _parsed(page).links
    assert links and all(not re.match(r"^[a-z]+:|^/|^\.\.", link) for link in links if not link.startswith("#"))
    for link in links:
        if not link.startswith("#"):
            assert (page / link).is_file(), link
    for plot in ("confusion-matrix", "roc", "precision-recall", "calibration", "histogram"):
        assert f"plots/{plot}.png" in links


def test_gallery_counts_match_the_csv(review_run):
    results, page, _ = review_run
    parsed = _parsed(page)
    expected = expected_galleries(results)
    assert list(parsed.galleries) == list(expected)
    for key, total in expected.items():
        assert int(parsed.galleries[key]["data-total"]) == total, key
        assert parsed.figures[key] == min(total, REVIEW_GALLERY), key
    assert expected["false-negatives"] and expected["false-positives"] and expected["out-of-scope"] == 1


def test_only_the_shown_scans_get_images_and_each_thumbnail_opens_its_overlay(review_run):
    _, page, _ = review_run
    parsed = _parsed(page)
    thumbnails = [link for link in parsed.links if link.endswith("-thumb.png")]
    full = [link for link in parsed.links if re.fullmatch(r"images/\d{4}\.png", link)]
    shown = sum(parsed.figures.values()) - parsed.figures["errors"]  # the truncated JPEG has no image
    assert len(set(thumbnails)) == len(list((page / "images").glob("*-thumb.png"))) <= shown
    assert {t.replace("-thumb", "") for t in thumbnails} == set(full)


def test_the_page_names_the_model_threshold_and_disclaimer(review_run):
    results, page, _ = review_run
    text = (page / "index.html").read_text(encoding="utf-8")
    with open(results, newline="") as stream:
        first = next(csv.DictReader(stream))
    assert first["model"] in text and first["threshold"] in text
    assert "xscan aids a physician; it is not a diagnostic device." in text
    assert "outside the training population (test)" in text  # the out-of-scope reason under its thumbnail


def test_results_from_another_model_are_shown_without_heatmaps(review_run, tmp_path):
    results, _, _ = review_run
    other = tmp_path / "other.csv"
    other.write_text(results.read_text().replace("xscan-cnn-", "older-cnn-"))
    rows = read_results(other)
    report = build_report(rows, FolderLabels(), bootstrap=0)
    written = write_review_page(report, rows, other, tmp_path / "page", FolderLabels(), gallery_size=2)
    assert written.pictures and not any(picture.heatmap for picture in written.pictures.values())
    assert any("no heatmaps" in note for note in written.notes)


def test_without_labels_the_highest_lowest_and_nearest(review_run, tmp_path):
    results, _, _ = review_run
    result = CliRunner().invoke(app, ["report", str(results), "--html", str(tmp_path / "page"), "--gallery", "2"])
    assert result.exit_code == 0, result.output
    parsed = _parsed(tmp_path / "page")
    assert list(parsed.galleries) == ["highest", "lowest", "nearest-threshold", "out-of-scope", "errors"]
    assert parsed.figures["highest"] == parsed.figures["lowest"] == 2


def test_relative_paths_are_found_beside_the_csv(tmp_path):
    (tmp_path / "run" / "scans").mkdir(parents=True)
    shutil.copy(real_scans("NORMAL", 1)[0], tmp_path / "run" / "scans" / "a.jpeg")
    with ResultsWriter(tmp_path / "run" / "results.csv") as writer:  # as if scored from inside run/
        writer.write([Row("scans/a.jpeg", 0.2, 0.5, "xscan-cnn-0.1.0-10d29a42")])
    rows = read_results(tmp_path / "run" / "results.csv")
    report = build_report(rows, bootstrap=0)
    written = write_review_page(report, rows, tmp_path / "run" / "results.csv", tmp_path / "page", None, gallery_size=1)
    assert set(written.pictures) == {"scans/a.jpeg"}


@needs_data
def test_a_large_results_file_gets_heatmaps_for_the_shown_scans_only(tmp_path):
    # How long 10,000 rows take is benchmarks/review_page.py's business; here, what is drawn of 3,000.
    files = sorted(TRAIN.glob("*/*.jpeg"))
    rng = np.random.default_rng(0)
    with ResultsWriter(tmp_path / "big.csv") as writer:
        writer.write(
            [
                Row(
                    str(path),
                    float(1 / (1 + np.exp(-rng.normal(2.5 if path.parent.name == "PNEUMONIA" else -1.5, 1.5)))),
                    0.9,
                    "xscan-cnn-0.1.0-10d29a42",
                )
                for path in (files[i % len(files)] for i in range(3_000))
            ]
        )
    truth = FolderLabels()
    rows = read_results(tmp_path / "big.csv")
    report = build_report(rows, truth, bootstrap=200)
    written = write_review_page(report, rows, tmp_path / "big.csv", tmp_path / "page", truth, gallery_size=5)
    shown = {entry.path for gallery in written.galleries for entry in gallery.entries}
    assert len(written.pictures) == len(shown) <= 25  # heatmaps for the shown scans only
    assert sum(gallery.total for gallery in written.galleries) > 3_000


@pytest.mark.slow
def test_without_galleries_no_model_is_loaded(review_run, tmp_path):
    results, _, _ = review_run
    page = tmp_path / "page"
    assert heavy_modules_after(RUN_CLI, "report", str(results), "--labels", "--html", str(page), "--gallery", "0") == []
    assert "0 shown of" in (page / "index.html").read_text(encoding="utf-8")
