"""The audit on hand-made reads: periods, counts, intervals, the verdict, where the promise comes from."""

from datetime import datetime, timedelta

import numpy as np
import pytest
from support.dicom import write_dicom

from xscan.audit.check import BROKEN, HOLDS, TOO_FEW, audit, period_of
from xscan.audit.promise import Promised, promises
from xscan.audit.reads import Judged, Matched, Read, Reads, match_reads
from xscan.errors import UsageError
from xscan.model.card import default_weights_dir, read_card
from xscan.model.site_calibration import SiteCalibration
from xscan.scoring.results import ResultsWriter, Row, results_columns
from xscan.stats import cusum

PROMISE = (Promised("sensitivity", 0.9, "test"), Promised("specificity", 0.9, "test"))
MONDAY = datetime(2026, 3, 2, 9)  # ISO week 10


def judged(label: int, flagged: bool, when: datetime, run: str = "1", line: int = 0) -> Judged:
    return Judged(Read(f"k{line}", label, when, line), Row(f"f{line}", 0.9 if flagged else 0.1, 0.5, "m"), run)


def audited(items: list[Judged], by: str = "week"):
    reads = Reads("reads.csv", "path", [item.read for item in items])
    return audit(Matched(items, [], []), reads, PROMISE, by)


def test_reads_fall_in_days_weeks_months_or_runs():
    item = judged(1, True, datetime(2026, 1, 1, 23, 59), run="7")
    assert [period_of(item, by) for by in ("day", "week", "month", "run")] == [
        "2026-01-01",
        "2026-W01",
        "2026-01",
        "run 7",
    ]
    assert period_of(judged(1, True, datetime(2027, 1, 1)), "week") == "2026-W53"  # the ISO year of the week
    with pytest.raises(ValueError):
        period_of(item, "year")


def test_each_period_counts_its_reads_with_wilson_intervals():
    # Week 10: 3 of 4 pneumonia reads flagged, 1 of 2 normal reads flagged. Week 11: one normal read, not flagged.
    calls = [(1, True), (1, True), (1, True), (1, False), (0, True), (0, False)]
    items = [judged(label, flagged, MONDAY + timedelta(hours=i), line=i) for i, (label, flagged) in enumerate(calls)]
    items.append(judged(0, False, MONDAY + timedelta(days=7), line=9))
    found = audited(items)
    first, second = found.periods
    assert (first.name, first.normal, first.pneumonia, second.name, second.normal) == ("2026-W10", 2, 4, "2026-W11", 1)
    assert (first.sensitivity.successes, first.sensitivity.trials) == (3, 4)
    # Wilson at 3/4, z^2 = 3.8415: centre (0.75 + 3.8415/8) / (1 + 3.8415/4) = 0.6275,
    # half 1.96 * sqrt(0.75 * 0.25 / 4 + 3.8415 / 64) / 1.9604 = 0.3269: 0.3006 to 0.9544.
    assert first.sensitivity.low == pytest.approx(0.3006, abs=1e-4)
    assert first.sensitivity.high == pytest.approx(0.9544, abs=1e-4)
    assert first.ppv.value == pytest.approx(3 / 4) and first.specificity.value == 0.5
    assert second.sensitivity.value is None and second.specificity.value == 1.0


def test_a_run_of_wrong_calls_breaks_the_promise_in_the_period_it_happens():
    good = [judged(label, bool(label), MONDAY + timedelta(hours=i), line=i) for i, label in enumerate([0, 1] * 20)]
    bad = [judged(0, True, MONDAY + timedelta(days=7, hours=i), line=100 + i) for i in range(10)]
    found = audited(good + bad)
    specificity = found.tests[1]
    assert found.verdict == BROKEN and specificity.broken and not found.tests[0].broken
    assert specificity.first_period == "2026-W11"
    assert specificity.failures == 10 and specificity.highest == 10 * cusum.chart_for(0.9).failure_step
    # Holm: the smaller p-value is tested at half the level, the other at the level.
    assert (specificity.level, found.tests[0].level) == (0.025, 0.05)
    assert [period.reached["specificity"] for period in found.periods] == [False, True]
    assert "specificity below 0.900 from 2026-W11" in found.summary()


def test_right_calls_hold_the_promise_only_once_there_are_enough_to_tell():
    needed = cusum.reads_needed(cusum.chart_for(0.9), 0.025)
    few = [judged(label, bool(label), MONDAY, line=i) for i, label in enumerate([0, 1] * (needed - 1))]
    found = audited(few)
    assert found.verdict == TOO_FEW
    assert found.summary().startswith(
        f"audit: too few reads to tell: {needed} pneumonia reads (have {needed - 1}), {needed} normal reads"
    )
    enough = [judged(label, bool(label), MONDAY, line=i) for i, label in enumerate([0, 1] * needed)]
    assert audited(enough).verdict == HOLDS


def test_by_run_orders_reads_by_run_and_names_each():
    items = [judged(1, True, MONDAY + timedelta(days=9 - i), run=str(1 + i % 2), line=i) for i in range(4)]
    assert [period.name for period in audited(items, "run").periods] == ["run 1", "run 2"]


def test_the_options_then_the_site_calibration_then_the_card_state_the_promise(tmp_path):
    card = read_card(default_weights_dir())
    from_card = promises(card)
    assert [p.value for p in from_card] == [card.validation.sensitivity, card.validation.specificity]
    assert "model card" in from_card[0].source
    site = SiteCalibration(
        base_model=card.model_id,
        threshold=0.5,
        slope=1.0,
        intercept=0.0,
        refit="intercept",
        target_sensitivity=0.97,
        counts={},
        at_threshold={},
        cross_checked={"specificity_interval": [0.7, 0.8], "specificity_cross_fitted_interval": [0.61, 0.75]},
    )
    (tmp_path / "site.json").write_text(site.to_json())
    sensitivity, specificity = promises(card, None, None, tmp_path / "site.json")
    assert (sensitivity.value, specificity.value) == (0.97, 0.61)
    assert "cross-fitted" in specificity.source and "guaranteed" in sensitivity.source
    with pytest.raises(UsageError, match="--promise-sensitivity is a share above 0"):
        promises(card, 0.0)
    mixed = promises(card, None, 0.8, tmp_path / "site.json")
    assert (mixed[0].value, mixed[1].value, mixed[1].source) == (0.97, 0.8, "--promise-specificity")


def test_reads_keyed_by_study_judge_the_study_s_highest_score(tmp_path):
    pixels = np.full((16, 16), 100, np.uint8)
    files = [
        write_dicom(tmp_path / "a1.dcm", pixels, StudyInstanceUID="1.2.3", AccessionNumber="ACC-A"),
        write_dicom(tmp_path / "a2.dcm", pixels, StudyInstanceUID="1.2.3", AccessionNumber="ACC-A"),
        write_dicom(tmp_path / "b.dcm", pixels, StudyInstanceUID="1.2.4", AccessionNumber="ACC-B"),
    ]
    rows = [Row(str(path), p, 0.5, "m") for path, p in zip(files, [0.2, 0.9, 0.1], strict=True)]
    with ResultsWriter(tmp_path / "results.csv", results_columns()) as writer:
        writer.write(rows)
    for key, a, b in (("StudyInstanceUID", "1.2.3", "1.2.4"), ("AccessionNumber", "ACC-A", "ACC-B")):
        reads = [Read(a, 1, MONDAY, 2), Read(b, 0, MONDAY, 3), Read("9.9", 0, MONDAY, 4)]
        matched = match_reads(Reads("reads.csv", key, reads), tmp_path / "results.csv")
        assert [(j.read.key, j.flagged) for j in matched.judged] == [(a, True), (b, False)]
        assert [read.key for read in matched.unmatched] == ["9.9"]
