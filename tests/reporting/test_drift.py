"""The drift check: its test on synthetic batches, the per-scan columns through resume, `xscan drift`'s exit codes."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DigitalXRayImageStorageForPresentation
from support.data import REPO, real_scans

from xscan.errors import EXIT_DRIFT, EXIT_OK, EXIT_USAGE
from xscan.model.card import default_weights_dir, read_card
from xscan.reporting.report import build_report, read_results
from xscan.reporting.review_page import write_review_page
from xscan.scoring.options import ScoreOptions
from xscan.scoring.results import LEGACY_COLUMNS, MEASURE_COLUMNS, RUN_COLUMN, read_table, results_columns
from xscan.scoring.run import score_folder
from xscan.scoring.state import FileState, StateFile, state_path
from xscan.stats.acquisition import age_in_years, compare_headers
from xscan.stats.drift import Reference, build_reference, check_batch, effective_size

# Two classes whose statistics differ, as the model's score and the film's grey levels do.
NORMAL, PNEUMONIA = (0.0, 1.0), (1.5, 1.0)


def _sample(rng, normals, pneumonias, offset=0.0):
    return np.concatenate([rng.normal(*NORMAL, normals), rng.normal(*PNEUMONIA, pneumonias)]) + offset


@pytest.fixture(scope="module")
def synthetic_reference():
    rng = np.random.default_rng(0)
    # A reference of 3 000 scans, a quarter normal like the card's: its own sampling error is small here.
    labels = np.r_[np.zeros(750, int), np.ones(2250, int)]
    return {
        "grey_mean": build_reference(_sample(rng, 750, 2250), labels),
        "feature_distance": build_reference(_sample(rng, 750, 2250), labels),
    }


@pytest.mark.parametrize("pneumonia_share", [0.1, 0.9])
def test_a_batch_with_another_share_of_pneumonia_is_not_drift(synthetic_reference, pneumonia_share):
    rng = np.random.default_rng(1)
    pneumonias = int(200 * pneumonia_share)
    alarms, shares = 0, []
    for _ in range(40):
        batch = {name: _sample(rng, 200 - pneumonias, pneumonias) for name in synthetic_reference}
        findings = check_batch(batch, synthetic_reference)
        alarms += any(finding.drifted for finding in findings)
        shares += [finding.pneumonia_share for finding in findings]
    assert alarms <= 4  # about 5 % expected, 10 % allowed for chance over 40 batches
    assert (np.mean(shares) < 0.5) == (pneumonia_share < 0.5)  # the mixture followed the label shift


def test_a_shifted_batch_is_drift_and_the_shifted_statistic_is_named(synthetic_reference):
    # Beyond both classes: a shift towards the pneumonia class alone looks like more pneumonia films (label shift).
    rng = np.random.default_rng(2)
    alarms = 0
    for _ in range(20):
        batch = {"grey_mean": _sample(rng, 100, 100), "feature_distance": _sample(rng, 100, 100, offset=2.0)}
        findings = {finding.statistic: finding for finding in check_batch(batch, synthetic_reference)}
        alarms += findings["feature_distance"].drifted
        assert not findings["grey_mean"].drifted or findings["grey_mean"].p_value < 0.05
    assert alarms >= 18


def test_with_the_site_s_prevalence_normals_that_look_like_pneumonia_are_drift(synthetic_reference):
    # 20 % pneumonia; the normal films' grey_mean moved 0.4 toward pneumonia's (1.5 away). Fitted, the mixture takes
    # them for more pneumonia; fixed at the stated 20 %, the batch is unlike it.
    # At the stated share unshifted: no alarm.
    rng = np.random.default_rng(4)
    fitted = fixed = unshifted = 0
    for _ in range(20):
        moved = np.concatenate([rng.normal(0.4, 1.0, 160), rng.normal(*PNEUMONIA, 40)])
        fitted += check_batch({"grey_mean": moved}, synthetic_reference)[0].drifted
        finding = check_batch({"grey_mean": moved}, synthetic_reference, prevalence=0.2)[0]
        fixed += finding.drifted
        assert finding.pneumonia_share == 0.2
        unshifted += check_batch({"grey_mean": _sample(rng, 160, 40)}, synthetic_reference, prevalence=0.2)[0].drifted
    assert fixed >= 18 and fitted <= fixed // 2
    assert unshifted <= 2


def test_feature_distance_alarms_only_when_it_grows(synthetic_reference):
    rng = np.random.default_rng(3)
    closer = check_batch({"feature_distance": _sample(rng, 100, 100, offset=-1.0)}, synthetic_reference)[0]
    further = check_batch({"feature_distance": _sample(rng, 100, 100, offset=1.0)}, synthetic_reference)[0]
    assert not closer.drifted and further.drifted  # scans more like the training scans are no drift


def test_effective_size_counts_a_patients_films_as_one_draw():
    assert effective_size(np.array(["a", "b", "c", "d"])) == 4  # one film each: every film counts
    assert effective_size(np.array(["a", "a", "a", "b"])) == 1  # (3 + 1)^2 / (9 + 1) = 1.6
    assert effective_size(np.array(["a", "a", "b", "b", "c", "c"])) == 3  # 36 / 12


def test_a_reference_of_patients_with_several_films_keeps_false_alarms_at_the_promise():
    # A reference of 60 patients per class with 5 alike films each (one draw per patient, a little jitter), and
    # batches of new patients: simulated as 300 independent films, the reference's error is understated and new
    # batches alarm far more often than the promised 5 %; at its effective size they do not.
    rng = np.random.default_rng(4)
    per_patient = np.r_[rng.normal(*NORMAL, 60), rng.normal(*PNEUMONIA, 60)]
    values = np.repeat(per_patient, 5) + rng.normal(0, 0.05, 600)
    labels, patients = np.repeat(np.r_[np.zeros(60, int), np.ones(60, int)], 5), np.repeat(np.arange(120), 5)
    clustered = {"grey_mean": build_reference(values, labels, patients)}
    as_films = {"grey_mean": build_reference(values, labels)}
    assert clustered["grey_mean"].sizes.tolist() == [60, 60] and as_films["grey_mean"].sizes.tolist() == [300, 300]
    alarms = {"clustered": 0, "as films": 0}
    for _ in range(40):
        batch = {"grey_mean": _sample(rng, 100, 100)}
        alarms["clustered"] += check_batch(batch, clustered)[0].drifted
        alarms["as films"] += check_batch(batch, as_films)[0].drifted
    assert alarms["clustered"] <= 4 < alarms["as films"], alarms


def test_the_reference_round_trips_through_the_card_format(synthetic_reference):
    reference = synthetic_reference["grey_mean"]
    again = Reference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert np.array_equal(again.counts, reference.counts) and np.allclose(again.edges, reference.edges)
    assert again.counts.sum() == 3000 and again.effective is None  # a card from before effective sizes: its scan counts
    clustered = build_reference(np.arange(6.0), np.array([0, 0, 0, 1, 1, 1]), np.array(["a", "a", "b", "c", "d", "e"]))
    assert Reference.from_dict(json.loads(json.dumps(clustered.to_dict()))).sizes.tolist() == [1, 3]


# --- the results file --------------------------------------------------------------------------------


def test_the_drift_statistics_and_runs_are_kept_in_the_state_file_and_round_trip_through_resume(tmp_path, scorer):
    folder = tmp_path / "scans"
    folder.mkdir()
    for path in real_scans("NORMAL", 3) + real_scans("PNEUMONIA", 3):
        shutil.copy2(path, folder / path.name)
    out = tmp_path / "r.csv"
    score_folder(folder, out, ScoreOptions(batch_size=4, workers=1), scorer=scorer)
    first = read_table(out)
    assert first.columns == results_columns() and not set(first.columns) & {*MEASURE_COLUMNS, RUN_COLUMN}
    first = first.with_state()  # the CSV's rows with what the state file beside it holds of each
    assert all(record[column] for record in first for column in MEASURE_COLUMNS)
    assert {record[RUN_COLUMN] for record in first} == {"1"}
    shutil.copy2(real_scans("PNEUMONIA", 4)[-1], folder / "new.jpeg")
    again = score_folder(folder, out, ScoreOptions(batch_size=4, workers=1), scorer=scorer)
    second = {record["path"]: record for record in read_table(out).with_state()}
    assert (again.scored, again.unchanged) == (1, 6)
    assert second[str(folder / "new.jpeg")][RUN_COLUMN] == "2"
    for record in first:  # unchanged rows keep their run and figures
        assert second[record["path"]] == record


# The header of a results file before the state file: bookkeeping columns between `error` and `scope`.
LAYOUT_17 = (*results_columns()[:6], *LEGACY_COLUMNS, "scope")


def _write_rows(path, card, rows, runs=None, files=None, layout="state"):
    """A results file with ROWS of drift statistics (dicts by name), as xscan score writes them (for FILES, if given).

    LAYOUT "state": the CSV and its state file; "17": the 17-column layout from before the state file.
    """
    columns = results_columns() if layout == "state" else LAYOUT_17
    records = []
    for number, row in enumerate(rows):
        file = str(files[number]) if files else f"/scans/{number}.jpeg"
        records.append(
            dict.fromkeys(LAYOUT_17, "")
            | {"path": file, "threshold": f"{card.threshold:.6f}", "model": card.model_id}
            | {RUN_COLUMN: str(runs[number] if runs else 1), "resolved_path": file}
            | {name: f"{value:.6g}" for name, value in row.items()}
        )
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    if layout == "state":
        with StateFile(path) as state:
            state.replace_files(FileState.from_fields(record) for record in records)


def _like_the_reference(card, count, seed, shift=None):
    """COUNT rows whose statistics are drawn from the card's own reference bins (half normal, half pneumonia)."""
    rng = np.random.default_rng(seed)
    rows = [{} for _ in range(count)]
    for name, reference in card.drift.statistics.items():
        for number, row in enumerate(rows):
            counts = reference.counts[number % 2][1:-1]  # interior bins: between two edges
            chosen = rng.choice(len(counts), p=counts / counts.sum())
            row[name] = rng.uniform(reference.edges[chosen], reference.edges[chosen + 1])
            if shift and name in shift:
                row[name] += shift[name]
    return rows


def _drift(*args):
    return subprocess.run(
        [sys.executable, "-m", "xscan.cli", "drift", *map(str, args)], capture_output=True, text=True, cwd=REPO
    )


@pytest.fixture(scope="module")
def card():
    return read_card(default_weights_dir())


@pytest.mark.parametrize("layout", ["state", "17"])
@pytest.mark.slow
def test_drift_exits_5_naming_the_statistic_and_0_on_scans_like_the_reference(tmp_path, card, layout):
    drifted, alike = tmp_path / "drifted.csv", tmp_path / "alike.csv"
    _write_rows(drifted, card, _like_the_reference(card, 150, 4, shift={"feature_distance": 25.0}), layout=layout)
    _write_rows(alike, card, _like_the_reference(card, 150, 5), layout=layout)
    done = _drift(drifted)
    assert done.returncode == EXIT_DRIFT, done.stderr
    assert (
        "feature_distance" in done.stderr.splitlines()[0]
        and "xscan calibrate" in done.stderr
        and "Traceback" not in done.stderr
    )
    quiet = _drift(alike, "--json")
    assert quiet.returncode == EXIT_OK, quiet.stderr
    verdict = json.loads(quiet.stdout)
    assert verdict["drifted"] is False and verdict["scans"] == 150 and len(verdict["statistics"]) == 5


def test_with_prevalence_more_pneumonia_than_the_site_states_is_drift(tmp_path, card):
    # Half the rows from each class of the card's reference: like the reference at 50 %, unlike it at a stated 10 %.
    out = tmp_path / "r.csv"
    _write_rows(out, card, _like_the_reference(card, 150, 8))
    stated = _drift(out, "--prevalence", "0.5", "--json")
    assert stated.returncode == EXIT_OK, stated.stderr
    assert json.loads(stated.stdout)["prevalence"] == 0.5
    fewer = _drift(out, "--prevalence", "0.1")
    assert fewer.returncode == EXIT_DRIFT, fewer.stderr
    assert "reference at the stated 10.0% pneumonia in" in fewer.stderr.splitlines()[0]


@pytest.mark.parametrize("layout", ["state", "17"])
@pytest.mark.slow
def test_drift_judges_the_last_run_unless_asked_for_every_row(tmp_path, card, layout):
    out = tmp_path / "r.csv"
    rows = _like_the_reference(card, 150, 6, shift={"scope_score": 0.5}) + _like_the_reference(card, 150, 7)
    _write_rows(out, card, rows, runs=[1] * 150 + [2] * 150, layout=layout)
    assert _drift(out).returncode == EXIT_OK
    assert _drift(out, "--all").returncode == EXIT_DRIFT


@pytest.mark.slow
def test_too_few_scans_and_an_older_results_file_exit_2_with_a_message(tmp_path, card):
    few = tmp_path / "few.csv"
    _write_rows(few, card, _like_the_reference(card, 60, 8))
    done = _drift(few)
    assert done.returncode == EXIT_USAGE and "60 scored rows in its last run: at least 100 are needed" in done.stderr
    older = tmp_path / "older.csv"
    older.write_text(
        "path,probability,label,threshold,model,error,size,mtime_ns\n"
        + "".join(f"/s/{i}.jpeg,0.5,NORMAL,0.7,{card.model_id},,1,1\n" for i in range(120))
    )
    done = _drift(older)
    assert (
        done.returncode == EXIT_USAGE
        and "written before the drift columns" in done.stderr
        and "Traceback" not in done.stderr
    )
    state_path(few).unlink()  # the CSV alone: no run numbers, no drift statistics
    done = _drift(few)
    assert done.returncode == EXIT_USAGE and "no state file beside it (few.csv.state.sqlite)" in done.stderr


def test_the_review_page_shows_the_verdict_or_why_there_is_none(tmp_path, card):
    drifted, few = tmp_path / "drifted.csv", tmp_path / "few.csv"
    _write_rows(drifted, card, _like_the_reference(card, 150, 4, shift={"feature_distance": 25.0}))
    _write_rows(few, card, _like_the_reference(card, 60, 8))
    rows = read_results(drifted)
    page = write_review_page(build_report(rows), rows, drifted, tmp_path / "drifted", None, gallery_size=0)
    section = page.index.read_text().split('<section id="drift"', 1)[1].split("</section>", 1)[0]
    assert page.drift.drifted and 'data-drifted="true"' in section
    assert "<td>DRIFT</td><td>the feature distance" in section and "xscan calibrate" in section
    rows = read_results(few)
    page = write_review_page(build_report(rows), rows, few, tmp_path / "few", None, gallery_size=0)
    assert 'data-drifted="unknown"' in page.index.read_text() and "at least 100 are needed" in page.index.read_text()


# --- DICOM acquisition headers against a baseline run ----------------------------------------------------


def _dicom_folder(folder, count, manufacturer):
    """COUNT small frontal DX files of children aged 5 to 14 from MANUFACTURER's unit."""
    folder.mkdir()
    paths = []
    for number in range(count):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
        ds.Modality, ds.ViewPosition, ds.Manufacturer, ds.PatientAge = (
            "DX",
            "PA",
            manufacturer,
            f"{5 + number % 10:03d}Y",
        )
        ds.set_pixel_data(np.full((8, 8), number % 256, np.uint8), "MONOCHROME2", 8)
        ds.save_as(folder / f"{number}.dcm", enforce_file_format=True)
        paths.append(folder / f"{number}.dcm")
    return paths


def test_header_fields_are_compared_with_holm_and_a_missing_field_is_named():
    assert (age_in_years("012Y"), age_in_years("006M"), age_in_years("12 years")) == (12.0, 0.5, None)
    baseline = {"Manufacturer": ["Acme"] * 60, "PatientAge": ["010Y"] * 30 + ["011Y"] * 30}
    alike = {"Manufacturer": ["Acme"] * 58 + ["Other"] * 2, "PatientAge": ["010Y"] * 29 + ["011Y"] * 31}
    findings, left_out = compare_headers(alike, baseline, 0.05)
    assert [f.field for f in findings] == ["Manufacturer", "PatientAge"] and not any(f.drifted for f in findings)
    assert len(left_out) == 5 and "DICOM PixelSpacing: 0 files" in " ".join(left_out)
    adults = {"Manufacturer": ["Acme"] * 60, "PatientAge": ["045Y"] * 60}
    findings, _ = compare_headers(adults, baseline, 0.05)
    assert [f.field for f in findings if f.drifted] == ["PatientAge"] and findings[1].common == "45 years"


@pytest.mark.slow
def test_a_new_manufacturer_against_the_baseline_run_exits_5_naming_the_field(tmp_path, card):
    old, same, new = tmp_path / "old.csv", tmp_path / "same.csv", tmp_path / "new.csv"
    baseline = _like_the_reference(card, 120, 9)  # a baseline in the layout before the state file still serves
    _write_rows(old, card, baseline, files=_dicom_folder(tmp_path / "old", 120, "Acme"), layout="17")
    _write_rows(same, card, _like_the_reference(card, 120, 10), files=_dicom_folder(tmp_path / "same", 120, "Acme"))
    _write_rows(new, card, _like_the_reference(card, 120, 10), files=_dicom_folder(tmp_path / "new", 120, "Other Corp"))
    quiet = _drift(same, "--baseline", old, "--json")
    assert quiet.returncode == EXIT_OK, quiet.stderr
    headers = {header["field"]: header for header in json.loads(quiet.stdout)["headers"]}
    assert set(headers) == {"Manufacturer", "PhotometricInterpretation", "BitsStored", "ViewPosition", "PatientAge"}
    assert headers["Manufacturer"]["files"] == 120 and not any(header["drifted"] for header in headers.values())
    done = _drift(new, "--baseline", old)
    assert done.returncode == EXIT_DRIFT, done.stderr
    assert "DICOM Manufacturer (against the baseline)" in done.stderr.splitlines()[0]
    assert "DRIFT DICOM Manufacturer" in done.stderr and "Other Corp" in done.stderr and "Traceback" not in done.stderr
