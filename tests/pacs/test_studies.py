"""The roll-up of `xscan studies` on rows made here: which study a file joins and what the study's verdict is."""

from __future__ import annotations

import csv
from pathlib import Path

from xscan.pacs.studies import BY_FILE, BY_PATIENT, STUDY_COLUMNS, group_studies, read_patients, write_studies
from xscan.reporting.labels import place
from xscan.scoring.results import ResultsWriter, Row, results_columns

MODEL, THRESHOLD = "xscan-test-model", 0.5


def row(path: str, probability: float | None, scope: str = "", error: str = "") -> Row:
    return Row(path, probability, THRESHOLD, MODEL, error, scope=scope)


def test_a_second_view_never_hides_a_finding() -> None:
    (study,) = group_studies([row("x/person7_a.jpeg", 0.2), row("x/person7_b.jpeg", 0.8), row("x/person7_c.jpeg", 0.3)])
    verdict = study.verdict()
    assert (study.key, study.grouped_by) == ("x/person7", BY_PATIENT)
    assert (verdict.probability, verdict.label) == (0.8, "PNEUMONIA")
    assert verdict.trailing_columns["decided_by"] == "x/person7_b.jpeg"


def test_an_out_of_scope_image_does_not_decide_while_another_is_in_scope() -> None:
    (study,) = group_studies(
        [row("p/person1_a.jpeg", 0.9, scope="rotated or inverted (score 0.99)"), row("p/person1_b.jpeg", 0.1)]
    )
    verdict = study.verdict()
    assert (verdict.probability, verdict.label, verdict.scope) == (0.1, "NORMAL", "")
    assert study.counts()["out_of_scope"] == 1


def test_a_study_with_no_image_in_scope_is_out_of_scope() -> None:
    (study,) = group_studies(
        [
            row("p/person1_a.jpeg", 0.9, scope="not a chest radiograph (score 0.9)"),
            row("p/person1_b.jpeg", None, error="empty file (0 bytes)"),
        ]
    )
    verdict = study.verdict()
    assert (verdict.label, verdict.scope) == ("OUT_OF_SCOPE", "not a chest radiograph (score 0.9)")
    assert study.counts() == {"files": 2, "scored": 1, "out_of_scope": 1, "skipped": 0, "errors": 1}


def test_a_study_with_no_file_scored_has_an_error_and_no_label() -> None:
    (study,) = group_studies(
        [
            row("p/person1_a.jpeg", None, error="empty file (0 bytes)"),
            row("p/person1_b.jpeg", None, error="skipped: lateral view (ViewPosition LL)"),
        ]
    )
    verdict = study.verdict()
    assert (verdict.probability, verdict.label) == (None, "")
    assert verdict.error == "no file could be scored (2 files; first: empty file (0 bytes))"


def test_files_of_no_known_patient_are_studies_of_their_own_and_a_patients_file_joins_them(tmp_path: Path) -> None:
    rows = [row("scans/a.png", 0.2), row("scans/b.png", 0.7)]
    assert [(s.key, s.grouped_by) for s in group_studies(rows)] == [("scans/a.png", BY_FILE), ("scans/b.png", BY_FILE)]
    patients = tmp_path / "patients.csv"
    patients.write_text("path,label,patient\na.png,NORMAL,MRN1\nb.png,NORMAL,MRN1\n")
    (study,) = group_studies(rows, read_patients(patients, Path("scans")))
    assert (study.key, study.grouped_by, study.verdict().probability) == ("scans/column:MRN1", BY_PATIENT, 0.7)
    assert place("scans/./a.png") == place("scans/a.png")


def test_the_studies_file_is_formula_safe_and_replaced_by_a_rerun(tmp_path: Path) -> None:
    results = tmp_path / "results.csv"
    with ResultsWriter(results, results_columns()) as writer:
        writer.write([row("=HYPERLINK(1).png", 0.4), row("person2_x.jpeg", 0.6)])
    out = tmp_path / "studies.csv"
    write_studies(results, str(out))
    write_studies(results, str(out))
    with open(out, newline="") as stream:
        records = list(csv.reader(stream))
    assert tuple(records[0]) == STUDY_COLUMNS
    assert [r[0] for r in records[1:]] == ["'=HYPERLINK(1).png", "person2"]
