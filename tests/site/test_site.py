"""Site calibration: the threshold's order statistic, its guarantee, refusals, out-of-sample figures, SITE.json."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from support.site import MODEL, site_rows, site_sample

from xscan.model.site_calibration import SiteCalibrationError, load_site
from xscan.reporting.labels import FolderLabels
from xscan.scoring.results import Row
from xscan.site.calibrate import MIN_PER_CLASS, ROUNDING, fit_site_calibration, select_rows


def _caught(site, scores: np.ndarray) -> np.ndarray:
    return site.probability(np.asarray(scores)) >= site.threshold


def test_threshold_is_the_conformal_order_statistic_of_the_pneumonia_scores():
    labelled = select_rows(site_sample(60), FolderLabels())
    site = fit_site_calibration(labelled, target_sensitivity=0.9)
    pneumonia = np.sort(labelled.probabilities[labelled.truth == 1])
    # floor((1 - 0.9) * 61) = 6: the 6th lowest pneumonia score is the threshold, the 5 below it are missed.
    assert site.rule == "expected" and site.rank == 6
    assert list(_caught(site, pneumonia)) == [False] * 5 + [True] * 55
    assert site.at_threshold["sensitivity"]["value"] == pytest.approx(55 / 60)
    assert site.sensitivity_range["expected"] == pytest.approx(1 - 6 / 61)
    assert site.sensitivity_range["low"] < 1 - 6 / 61 < site.sensitivity_range["high"]
    assert "expected sensitivity on new scans >= 0.9" in site.guarantee and "Angelopoulos" in site.guarantee


def test_with_confidence_the_threshold_is_the_umbrella_order_statistic():
    labelled = select_rows(site_sample(60), FolderLabels())
    site = fit_site_calibration(labelled, target_sensitivity=0.9, confidence=0.9)
    pneumonia = np.sort(labelled.probabilities[labelled.truth == 1])
    # P(Binomial(60, 0.1) <= 2) = 0.053 <= 0.1 < P(<= 3) = 0.143: rank 3, two pneumonia scans below the threshold.
    assert site.rule == "confidence" and site.confidence == 0.9 and site.rank == 3
    assert list(_caught(site, pneumonia)) == [False] * 2 + [True] * 58
    assert "with probability >= 0.9" in site.guarantee and "Tong" in site.guarantee


def test_scans_tied_with_or_rounded_down_from_the_threshold_scan_are_caught():
    normal = list(np.linspace(0.05, 0.6, 20))
    pneumonia = [0.5, 0.7, 0.7, 0.7] + list(
        np.linspace(0.75, 0.99, 36)
    )  # 40 scans: rank floor(0.1 * 41) = 4 is a tied 0.7
    site = fit_site_calibration(select_rows(site_rows(normal, pneumonia), FolderLabels()), target_sensitivity=0.9)
    assert site.rank == 4
    assert list(_caught(site, [0.5, 0.7, 0.7, 0.7])) == [False, True, True, True]
    # A new scan scored like the threshold's scan, whose written score was rounded up to six decimals, is still caught.
    assert _caught(site, [0.7 - 0.9 * ROUNDING])[0] and not _caught(site, [0.7 - 2 * ROUNDING])[0]


def test_out_of_sample_figures_are_not_the_in_sample_ones():
    normal = list(np.linspace(0.05, 0.6, 20))
    pneumonia = list(np.linspace(0.3, 0.99, 20))
    site = fit_site_calibration(select_rows(site_rows(normal, pneumonia), FolderLabels()))
    # 20 pneumonia scans, S = 0.95: the threshold is the lowest (rank 1), so every sample scan is caught (in-sample
    # 1.0), while each scan left out is judged at the lowest of the other 19 (rank floor(0.05 * 20) = 1): the lowest
    # is missed.
    assert site.at_threshold["sensitivity"]["value"] == 1.0
    assert site.cross_checked["sensitivity"] == pytest.approx(19 / 20)
    # Specificity on the normals, which did not choose the threshold: those below the lowest pneumonia score, 0.3.
    assert site.cross_checked["specificity"] == pytest.approx(np.mean(np.array(normal) < 0.3))
    low, high = site.cross_checked["specificity_interval"]
    assert low < site.cross_checked["specificity"] < high
    assert "did not choose" not in site.at_threshold["measured_on"] and "optimistic" in site.at_threshold["measured_on"]


def test_cross_fitted_specificity_carries_the_thresholds_spread():
    # 20 pneumonia scans (lowest 0.3, next 0.5) and 20 normals at 0.4. At the site threshold (rank 1: the lowest, 0.3)
    # no normal is below it: 0 of 20. Leave-one-out thresholds: 0.5 with the 0.3 scan left out, 0.3 otherwise; the
    # normals are dealt out in turn, so exactly one of them (the first) is judged at 0.5 and counts as specific:
    # 1 of 20.
    site = fit_site_calibration(select_rows(site_rows([0.4] * 20, [0.3, *np.linspace(0.5, 0.99, 19)]), FolderLabels()))
    assert site.rank == 1 and site.cross_checked["specificity"] == 0.0
    assert site.cross_checked["specificity_cross_fitted"] == pytest.approx(1 / 20)
    low, high = site.cross_checked["specificity_cross_fitted_interval"]
    assert low < 1 / 20 < high


def test_leave_one_out_is_not_measured_when_the_rule_needs_every_scan():
    # 59 pneumonia scans are the fewest for S = C = 0.95; leaving one out leaves 58, too few for the rule.
    site = fit_site_calibration(
        select_rows(site_rows([0.2] * 20, list(np.linspace(0.5, 0.99, 59))), FolderLabels()), confidence=0.95
    )
    assert site.rank == 1
    assert site.cross_checked["sensitivity"] is None and "needs 60" in site.cross_checked["sensitivity_method"]
    assert site.cross_checked["specificity_cross_fitted"] is None


def test_too_few_pneumonia_scans_for_the_rule_are_refused_with_the_number_needed():
    rows = site_rows([0.2] * 30, list(np.linspace(0.5, 0.99, 40)))
    with pytest.raises(SiteCalibrationError, match="40 here, at least 59 needed"):
        fit_site_calibration(select_rows(rows, FolderLabels()), confidence=0.95)
    with pytest.raises(SiteCalibrationError, match="40 here, at least 49 needed"):
        fit_site_calibration(select_rows(rows, FolderLabels()), target_sensitivity=0.98)


def test_prevalence_assumed_is_the_sample_mix_unless_given():
    labelled = select_rows(site_rows([0.2] * 30, list(np.linspace(0.5, 0.99, 20))), FolderLabels())
    assert fit_site_calibration(labelled).prevalence_assumed == pytest.approx(0.4)
    given = fit_site_calibration(labelled, prevalence=0.1)
    assert given.prevalence == given.prevalence_assumed == 0.1


def test_refuses_fewer_than_twenty_of_either_class():
    rows = site_rows([0.2] * 40, [0.9] * (MIN_PER_CLASS - 1))
    with pytest.raises(SiteCalibrationError, match="19 PNEUMONIA"):
        fit_site_calibration(select_rows(rows, FolderLabels()))


def test_intercept_follows_the_site_prevalence():
    labelled = select_rows(site_sample(50), FolderLabels())
    sample = fit_site_calibration(labelled)
    rare = fit_site_calibration(labelled, prevalence=0.1)
    assert sample.refit == "intercept" and sample.slope == 1.0
    # Same ranking and sensitivity rule; probabilities move down where pneumonia is rarer.
    assert rare.intercept < sample.intercept
    assert np.all(rare.probability(labelled.probabilities) < sample.probability(labelled.probabilities))


def test_slope_is_refitted_with_enough_scans():
    assert fit_site_calibration(select_rows(site_sample(120), FolderLabels())).refit == "slope and intercept"


def test_rows_without_truth_with_errors_or_out_of_scope_are_left_out_and_named():
    rows = site_sample(25) + [
        Row("elsewhere/x.png", 0.4, 0.5, MODEL),
        Row("site/NORMAL/broken.png", None, 0.5, MODEL, "not an image"),
    ]
    labelled = select_rows(rows, FolderLabels())
    assert labelled.truth.size == 50
    assert labelled.left_out == {"no ground truth": ["elsewhere/x.png"], "error": ["site/NORMAL/broken.png"]}


def test_results_of_a_site_calibrated_run_are_refused():
    with pytest.raises(SiteCalibrationError, match="without --calibration"):
        select_rows(site_rows([0.1] * 20, [0.9] * 20, model=f"{MODEL}+0123abcd"), FolderLabels())


def test_site_file_round_trip_and_model_id(tmp_path):
    site = fit_site_calibration(select_rows(site_sample(30), FolderLabels()))
    path = tmp_path / "site.json"
    path.write_text(site.to_json())
    loaded = load_site(path, MODEL)
    assert loaded.calibration == site
    assert loaded.model_id() == f"{MODEL}+{loaded.sha256[:8]}"
    # Another calibration, another id: rows of two calibrations never mix on resume.
    other = tmp_path / "other.json"
    other.write_text(fit_site_calibration(select_rows(site_sample(30, seed=1), FolderLabels())).to_json())
    assert load_site(other, MODEL).model_id() != loaded.model_id()


def test_site_file_for_another_model_is_refused(tmp_path):
    path = tmp_path / "site.json"
    path.write_text(fit_site_calibration(select_rows(site_sample(30), FolderLabels())).to_json())
    with pytest.raises(SiteCalibrationError, match="made for model"):
        load_site(path, "xscan-cnn-0.1.0-99999999")
    path.write_text(json.dumps({"threshold": 0.5}))
    with pytest.raises(SiteCalibrationError, match="not a site calibration file"):
        load_site(path, MODEL)


def test_calibrate_command_writes_the_site_file_and_refuses_small_samples(tmp_path):
    from typer.testing import CliRunner

    from xscan.cli import app
    from xscan.scoring.results import ResultsWriter

    results = tmp_path / "sample.csv"
    with ResultsWriter(results) as writer:
        writer.write(site_sample(30))
    site = tmp_path / "site.json"
    done = CliRunner().invoke(app, ["calibrate", str(results), "--labels", "-o", str(site)])
    assert done.exit_code == 0, done.output
    assert load_site(site, MODEL).calibration.counts["used"] == 60
    assert "cross-checked" not in done.output and "leave-one-out" in done.output
    assert "50.0% assumed (the sample's class mix)" in done.output and "Angelopoulos" in done.output

    with ResultsWriter(results) as writer:
        writer.write(site_rows([0.2] * 30, [0.9] * 10))
    refused = CliRunner().invoke(app, ["calibrate", str(results), "--labels", "-o", str(tmp_path / "small.json")])
    assert refused.exit_code == 2
    assert "10 PNEUMONIA" in refused.output and not (tmp_path / "small.json").exists()


def test_scoring_with_a_site_file_uses_its_threshold_calibration_and_model_id(tmp_path, scorer, scan_folder):
    from xscan.errors import ResultsFileError, UsageError
    from xscan.scoring.options import ScoreOptions
    from xscan.scoring.results import read_rows
    from xscan.scoring.run import score_folder

    plain = tmp_path / "plain.csv"
    score_folder(scan_folder, plain, ScoreOptions(), scorer=scorer)
    base = {row.path: row for row in read_rows(plain)}
    site = fit_site_calibration(select_rows(site_sample(30), FolderLabels()))
    site = type(site)(**{**site.__dict__, "base_model": scorer.card.model_id})
    site_file = tmp_path / "site.json"
    site_file.write_text(site.to_json())
    loaded = load_site(site_file, scorer.card.model_id)

    out = tmp_path / "site.csv"
    score_folder(scan_folder, out, ScoreOptions(calibration=site_file), scorer=scorer)
    for row in read_rows(out):
        assert row.model == loaded.model_id() and row.threshold == pytest.approx(site.threshold, abs=1e-6)
        expected = site.probability(np.array([base[row.path].probability]))[0]
        assert row.probability == pytest.approx(expected, abs=2e-5)  # from the unrounded base probability
    # Rows of two calibrations never mix: the plain results file refuses the site-calibrated run.
    with pytest.raises(ResultsFileError):
        score_folder(scan_folder, plain, ScoreOptions(calibration=site_file), scorer=scorer)
    # A site file made for another model is a usage error.
    site_file.write_text(type(site)(**{**site.__dict__, "base_model": "xscan-cnn-0.0.0-00000000"}).to_json())
    with pytest.raises(UsageError, match="made for model"):
        score_folder(scan_folder, tmp_path / "other.csv", ScoreOptions(calibration=site_file), scorer=scorer)


def test_calibrate_takes_labels_relative_to_a_labels_root(tmp_path):
    from typer.testing import CliRunner

    from xscan.cli import app
    from xscan.scoring.results import ResultsWriter

    results = tmp_path / "sample.csv"
    rows = site_sample(30)
    with ResultsWriter(results) as writer:
        writer.write(rows)
    truth = tmp_path / "truth.csv"
    truth.write_text(
        "path,label\n"
        + "".join(f"{row.path.removeprefix('site/')},{int('PNEUMONIA' in row.path)}\n" for row in rows)
        + "NORMAL/elsewhere.png,0\n"
    )
    site = tmp_path / "site.json"
    done = CliRunner().invoke(
        app, ["calibrate", str(results), "--labels-file", str(truth), "--labels-root", "site", "-o", str(site)]
    )
    assert done.exit_code == 0, done.output
    assert load_site(site, MODEL).calibration.counts["used"] == 60
    without_root = CliRunner().invoke(app, ["calibrate", str(results), "--labels-file", str(truth), "-o", str(site)])
    assert without_root.exit_code == 2 and "0 NORMAL" in without_root.output  # paths as written match nothing
    alone = CliRunner().invoke(app, ["calibrate", str(results), "--labels", "--labels-root", "site", "-o", str(site)])
    assert alone.exit_code == 2 and "give --labels-file too" in alone.output


def test_calibrate_exits_2_saying_how_many_pneumonia_scans_the_rule_needs(tmp_path):
    from xscan.scoring.results import ResultsWriter

    results = tmp_path / "sample.csv"
    with ResultsWriter(results) as writer:
        writer.write(site_sample(30))
    site = tmp_path / "site.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "xscan.cli",
            "calibrate",
            str(results),
            "--labels",
            "--confidence",
            "0.95",
            "-o",
            str(site),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "30 here, at least 59 needed" in " ".join((done.stdout + done.stderr).split()) and not site.exists()


def test_a_site_file_written_before_the_rules_still_loads(tmp_path):
    # The fields `xscan calibrate` wrote before it stated a guarantee (xscan 0.1.0, 5-fold cross-check).
    old = {
        "base_model": MODEL,
        "threshold": 0.61,
        "slope": 1.0,
        "intercept": -0.8,
        "refit": "intercept",
        "target_sensitivity": 0.95,
        "counts": {"NORMAL": 30, "PNEUMONIA": 30, "used": 60},
        "at_threshold": {
            "sensitivity": {"value": 0.967, "interval": [0.833, 0.994]},
            "specificity": {"value": 0.7, "interval": [0.521, 0.833]},
            "measured_on": "the same scans",
        },
        "cross_checked": {"sensitivity": 0.9, "specificity": 0.73, "folds": 5},
        "prevalence": None,
        "format": "xscan-site-calibration/1",
    }
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    site = load_site(path, MODEL).calibration
    assert site.threshold == 0.61 and site.rule == "" and site.guarantee == "" and site.sensitivity_range == {}
    assert site.probability(np.array([0.5]))[0] == pytest.approx(1 / (1 + np.exp(0.8)))


def test_readme_table_of_guarantees_is_current():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("site_guarantees", root / "docs" / "site_guarantees.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    marked = module.MARKED.search((root / "README.md").read_text())
    assert marked and marked.group(1) == module.tables(), "run python docs/site_guarantees.py"
    assert "| 0.95 | 19 | 45 | 59 |" in marked.group(1)  # the figures: 19 expected, 59 at confidence 0.95
