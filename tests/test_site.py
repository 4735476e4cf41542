"""Site calibration: threshold at the target sensitivity, refusals, the SITE.json round trip and the model id it gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.site import MODEL, site_rows, site_sample

from xscan.model.site_calibration import SiteCalibrationError, load_site
from xscan.reporting.labels import FolderLabels
from xscan.scoring.results import Row
from xscan.site.calibrate import MIN_PER_CLASS, fit_site_calibration, select_rows


def test_threshold_is_the_highest_reaching_the_target_sensitivity():
    site = fit_site_calibration(select_rows(site_sample(60), FolderLabels()), target_sensitivity=0.9)
    labelled = select_rows(site_sample(60), FolderLabels())
    calibrated = site.probability(labelled.probabilities)
    positives = calibrated[labelled.truth == 1]
    assert (positives >= site.threshold).mean() >= 0.9
    # Any higher threshold (the next calibrated pneumonia score up) loses the target.
    higher = np.sort(positives[positives > site.threshold])[0]
    assert (positives >= higher).mean() < 0.9
    assert site.at_threshold["sensitivity"]["value"] >= 0.9
    low, high = site.at_threshold["specificity"]["interval"]
    assert low < site.at_threshold["specificity"]["value"] < high


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
    assert "cross-checked" in done.output

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
    truth.write_text("path,label\n" + "".join(f"{row.path.removeprefix('site/')},{int('PNEUMONIA' in row.path)}\n" for row in rows)
                     + "NORMAL/elsewhere.png,0\n")
    site = tmp_path / "site.json"
    done = CliRunner().invoke(app, ["calibrate", str(results), "--labels-file", str(truth), "--labels-root", "site", "-o", str(site)])
    assert done.exit_code == 0, done.output
    assert load_site(site, MODEL).calibration.counts["used"] == 60
    without_root = CliRunner().invoke(app, ["calibrate", str(results), "--labels-file", str(truth), "-o", str(site)])
    assert without_root.exit_code == 2 and "0 NORMAL" in without_root.output  # paths as written match nothing
    alone = CliRunner().invoke(app, ["calibrate", str(results), "--labels", "--labels-root", "site", "-o", str(site)])
    assert alone.exit_code == 2 and "give --labels-file too" in alone.output
