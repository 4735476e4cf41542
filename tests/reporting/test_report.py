"""The report on a small hand-built results CSV, against numbers worked out by hand and by scikit-learn."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from xscan.reporting.labels import FileLabels, FolderLabels
from xscan.reporting.report import ReportError, build_report, report_from_csv
from xscan.reporting.view import report_json
from xscan.scoring.results import ResultsWriter, Row
from xscan.stats.intervals import wilson_interval

# At threshold 0.5: pneumonia 0.9 0.8 0.7 0.6 flagged, 0.3 missed; normal 0.55 flagged, the rest passed.
PNEUMONIA = (0.9, 0.8, 0.7, 0.6, 0.3)
NORMAL = (0.55, 0.4, 0.2, 0.1, 0.05)


def _rows(threshold: float = 0.5) -> list[Row]:
    return [Row(f"/data/PNEUMONIA/p{i}.jpeg", p, threshold, "m") for i, p in enumerate(PNEUMONIA)] + [
        Row(f"/data/NORMAL/n{i}.jpeg", p, threshold, "m") for i, p in enumerate(NORMAL)
    ]


def _csv(tmp_path: Path, rows: list[Row]) -> Path:
    path = tmp_path / "results.csv"
    with ResultsWriter(path) as writer:
        writer.write(rows)
    return path


@pytest.fixture
def hand_built(tmp_path: Path) -> Path:
    """The ten rows above plus one that failed and one outside any labelled folder."""
    extra = [
        Row("/data/NORMAL/broken.jpeg", None, 0.5, "m", "cannot decode: truncated"),
        Row("/data/other/x.jpeg", 0.7, 0.5, "m"),
    ]
    return _csv(tmp_path, _rows() + extra)


def test_metrics_by_hand(hand_built: Path) -> None:
    report = report_from_csv(hand_built, FolderLabels(), bootstrap=0)
    m = report.evaluation.metrics
    assert (m["n"], m["tp"], m["fn"], m["fp"], m["tn"]) == (10, 4, 1, 1, 4)
    for name in ("sensitivity", "specificity", "precision", "npv", "f1", "accuracy", "balanced_accuracy"):
        assert m[name] == pytest.approx(0.8), name
    assert m["auc"] == pytest.approx(23 / 25)  # 0.3 beats three of the five normal scores; the rest beat all
    assert m["average_precision"] == pytest.approx((1 + 1 + 1 + 1 + 5 / 7) / 5)


def test_metrics_agree_with_scikit_learn(hand_built: Path) -> None:
    m = report_from_csv(hand_built, FolderLabels(), bootstrap=0).evaluation.metrics
    truth = [1] * 5 + [0] * 5
    scores = [*PNEUMONIA, *NORMAL]
    predicted = [int(p >= 0.5) for p in scores]
    assert m["sensitivity"] == pytest.approx(recall_score(truth, predicted))
    assert m["specificity"] == pytest.approx(recall_score(truth, predicted, pos_label=0))
    assert m["precision"] == pytest.approx(precision_score(truth, predicted))
    assert m["npv"] == pytest.approx(precision_score(truth, predicted, pos_label=0))
    assert m["f1"] == pytest.approx(f1_score(truth, predicted))
    assert m["auc"] == pytest.approx(roc_auc_score(truth, scores))
    assert m["average_precision"] == pytest.approx(average_precision_score(truth, scores))


def test_failed_and_unlabelled_rows_are_counted_and_named(hand_built: Path) -> None:
    report = report_from_csv(hand_built, FolderLabels(), bootstrap=0)
    assert report.summary.rows == 12
    assert report.summary.errors == [("/data/NORMAL/broken.jpeg", "cannot decode: truncated")]
    assert report.evaluation.without_truth == ["/data/other/x.jpeg"]
    notes = " ".join(report.notes)
    assert "1 row(s) could not be scored" in notes and "broken.jpeg: cannot decode: truncated" in notes
    assert "1 scored row(s) have no ground truth" in notes and "/data/other/x.jpeg" in notes


def test_wilson_interval_known_values() -> None:
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=5e-5)
    assert wilson_interval(4, 5) == pytest.approx((0.3755, 0.9638), abs=5e-5)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=5e-5))
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=5e-5), 1.0)
    assert all(math.isnan(bound) for bound in wilson_interval(0, 0))


def test_proportions_get_wilson_intervals(hand_built: Path) -> None:
    intervals = report_from_csv(hand_built, FolderLabels(), bootstrap=0).evaluation.intervals
    assert (intervals["accuracy"].low, intervals["accuracy"].high) == pytest.approx(wilson_interval(8, 10))
    assert (intervals["sensitivity"].low, intervals["sensitivity"].high) == pytest.approx(wilson_interval(4, 5))
    assert intervals["npv"].method == "wilson" and intervals["auc"].method == "bootstrap"


def test_bootstrap_intervals_are_reproducible_and_hold_the_estimate() -> None:
    rng = np.random.default_rng(7)
    rows = [
        Row(
            f"/d/{'PNEUMONIA' if y else 'NORMAL'}/{i}.png",
            float(np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)),
            0.5,
            "m",
        )
        for i, y in enumerate(rng.integers(0, 2, 120))
    ]
    first = build_report(rows, FolderLabels(), bootstrap=150, seed=3)
    again = build_report(rows, FolderLabels(), bootstrap=150, seed=3)
    other = build_report(rows, FolderLabels(), bootstrap=150, seed=4)
    assert first.evaluation.intervals == again.evaluation.intervals
    assert first.evaluation.intervals["auc"] != other.evaluation.intervals["auc"]
    assert first.evaluation.resamples_used == 150
    for name in ("auc", "average_precision", "f1", "balanced_accuracy"):
        interval = first.evaluation.intervals[name]
        assert interval.low < first.evaluation.metrics[name] < interval.high, name
        assert interval.high - interval.low < 0.4, name


def test_operating_points(hand_built: Path) -> None:
    points = report_from_csv(hand_built, FolderLabels(), bootstrap=0).evaluation.operating_points
    by_rule = {point.rule: point for point in points}
    assert set(by_rule) == {"CSV; 0.5", "sens >= 0.95", "spec >= 0.95; Youden J"}
    screening = by_rule["sens >= 0.95"]  # the highest threshold still catching every pneumonia: 0.3
    assert (screening.threshold, screening.sensitivity, screening.specificity, screening.fp) == (0.3, 1.0, 0.6, 2)
    confirming = by_rule["spec >= 0.95; Youden J"]  # 0.6: no normal flagged, J = 0.8
    assert (confirming.threshold, confirming.sensitivity, confirming.specificity, confirming.tp) == (0.6, 0.8, 1.0, 4)


def test_threshold_option_overrides_the_csv(hand_built: Path) -> None:
    report = report_from_csv(hand_built, FolderLabels(), threshold=0.35, bootstrap=0)
    m = report.evaluation.metrics
    assert (report.threshold_source, m["threshold"], m["tp"], m["fp"]) == ("option", 0.35, 4, 2)
    assert [p.rule for p in report.evaluation.operating_points][:2] == ["--threshold", "CSV; 0.5"]
    assert report.summary.predicted == {"PNEUMONIA": 7, "NORMAL": 4}


def test_target_sensitivity_moves_its_operating_point(hand_built: Path) -> None:
    points = report_from_csv(
        hand_built, FolderLabels(), target_sensitivity=0.8, bootstrap=0
    ).evaluation.operating_points
    assert [(p.threshold, p.sensitivity) for p in points if p.rule.startswith("sens >= 0.8")] == [(0.6, 0.8)]


def test_one_class_only_leaves_auc_undefined_and_says_so(tmp_path: Path) -> None:
    rows = [row for row in _rows() if "NORMAL" in row.path]
    report = report_from_csv(_csv(tmp_path, rows), FolderLabels(), bootstrap=50)
    m = report.evaluation.metrics
    assert math.isnan(m["auc"]) and math.isnan(m["sensitivity"])
    assert m["specificity"] == pytest.approx(0.8) and m["fp"] == 1
    assert any("only NORMAL scans have ground truth" in note for note in report.notes)
    assert [p.rule for p in report.evaluation.operating_points] == ["CSV; 0.5"]
    data = json.loads(report_json(report))
    assert data["auc"] is None and data["specificity"] == pytest.approx(0.8)
    assert data["intervals"]["auc"] == {"low": None, "high": None, "method": "bootstrap"}


def test_json_has_the_promised_keys_as_numbers(hand_built: Path) -> None:
    data = json.loads(report_json(report_from_csv(hand_built, FolderLabels(), bootstrap=20)))
    for key in (
        "n",
        "tp",
        "fp",
        "tn",
        "fn",
        "sensitivity",
        "specificity",
        "precision",
        "npv",
        "f1",
        "accuracy",
        "balanced_accuracy",
        "auc",
        "average_precision",
        "threshold",
    ):
        assert isinstance(data[key], int | float) and not isinstance(data[key], bool), key
    assert data["intervals"]["sensitivity"]["low"] == pytest.approx(wilson_interval(4, 5)[0])
    assert data["operating_points"][0]["tp"] == 4
    assert (data["rows"], data["errors"], data["without_ground_truth"]) == (12, 1, 1)


def test_without_labels_a_summary(hand_built: Path) -> None:
    report = report_from_csv(hand_built)
    assert report.evaluation is None
    assert report.summary.predicted == {"PNEUMONIA": 6, "NORMAL": 5}
    assert sum(report.summary.histogram_counts) == 11
    assert report.summary.histogram_counts[9] == 1 and report.summary.histogram_edges[3] == 0.3
    data = json.loads(report_json(report))
    assert (data["n"], data["errors"], data["predicted"]["PNEUMONIA"]) == (11, 1, 6)
    assert "tp" not in data


def test_labels_file_gives_the_same_report_as_folders(hand_built: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n" + "".join(f"PNEUMONIA/p{i}.jpeg,1\nNORMAL/n{i}.jpeg,NORMAL\n" for i in range(5)))
    from_file = report_from_csv(hand_built, FileLabels.read(labels, root=Path("/data")), bootstrap=0).evaluation.metrics
    from_folders = report_from_csv(hand_built, FolderLabels(), bootstrap=0).evaluation.metrics
    assert from_file == from_folders


def test_labels_file_that_matches_nothing(hand_built: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\nzzz.jpeg,1\n")
    with pytest.raises(ReportError, match="no row got ground truth from labels file .*labels.csv .1 entries"):
        report_from_csv(hand_built, FileLabels.read(labels))


def test_folders_that_give_no_labels(tmp_path: Path) -> None:
    rows = [Row("/scans/a.jpeg", 0.2, 0.5, "m")]
    with pytest.raises(
        ReportError, match="no row got ground truth from NORMAL / PNEUMONIA folder names.*/scans/a.jpeg"
    ):
        build_report(rows, FolderLabels())


def test_only_failed_rows_have_ground_truth(tmp_path: Path) -> None:
    rows = [Row("/scans/NORMAL/a.jpeg", None, 0.5, "m", "unreadable"), Row("/scans/b.jpeg", 0.2, 0.5, "m")]
    with pytest.raises(ReportError, match="every row with ground truth could not be scored"):
        build_report(rows, FolderLabels())


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(
        ReportError, match="empty.csv is empty: expected an xscan results CSV with columns path,probability"
    ):
        report_from_csv(tmp_path / "empty.csv")


def test_header_only(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="results.csv has no rows"):
        report_from_csv(_csv(tmp_path, []), FolderLabels())


def test_not_an_xscan_csv_names_the_missing_columns(tmp_path: Path) -> None:
    (tmp_path / "other.csv").write_text("path,score\na.jpeg,0.3\n")
    with pytest.raises(ReportError, match="missing column\\(s\\) probability, label, threshold, model, error"):
        report_from_csv(tmp_path / "other.csv")


def test_a_bad_number_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("path,probability,label,threshold,model,error\na.jpeg,high,,0.5,m,\n")
    with pytest.raises(ReportError, match="bad.csv, row 2, column probability: 'high' is not a number between 0 and 1"):
        report_from_csv(tmp_path / "bad.csv")


def test_mixed_thresholds_need_a_choice(tmp_path: Path) -> None:
    rows = _rows(0.5)[:5] + _rows(0.4)[5:]
    with pytest.raises(ReportError, match="2 different thresholds \\(0.4, 0.5\\); pass --threshold"):
        build_report(rows, FolderLabels())
    assert build_report(rows, FolderLabels(), threshold=0.5, bootstrap=0).evaluation.metrics["tp"] == 4
