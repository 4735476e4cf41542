"""The out-of-scope check of the shipped model: what it flags, what it keeps, and how flagged rows look."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from support.data import FULLRES, TRAIN, needs_data, validation_scans
from support.model import with_trained_batch_norms
from support.scope_corpus import full_resolution_films, validation_films, write_corpus

from xscan.errors import EXIT_OK
from xscan.model.card import CARD_FILE, default_weights_dir
from xscan.model.classes import OUT_OF_SCOPE
from xscan.model.scorer import NO_SCOPE_CHECK, load_scorer
from xscan.reporting.labels import FolderLabels
from xscan.reporting.report import report_from_csv
from xscan.scoring.options import ScoreOptions
from xscan.scoring.results import SCOPE_COLUMN, read_rows
from xscan.scoring.run import Notice, score_folder


@pytest.fixture(scope="module")
def corpus_rows(tmp_path_factory, scorer) -> dict[str, list]:
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root / "corpus", validation_films(), full_resolution_films())
    summary = score_folder(root / "corpus", root / "corpus.csv", ScoreOptions(), scorer=scorer)
    assert summary.failed == 0
    rows: dict[str, list] = {}
    for row in read_rows(root / "corpus.csv"):
        rows.setdefault(Path(row.path).parent.name, []).append(row)
    return rows


def test_every_kind_of_non_radiograph_and_broken_rendering_is_out_of_scope(corpus_rows):
    flagged = {kind: sum(row.label == OUT_OF_SCOPE for row in rows) / len(rows) for kind, rows in corpus_rows.items()}
    assert set(flagged) == {"pictures", "other_modalities", "drawn", "broken_renderings", "crops"}
    every = [row for rows in corpus_rows.values() for row in rows]
    assert sum(row.label == OUT_OF_SCOPE for row in every) / len(every) >= 0.95, flagged
    # No kind gets through as a whole: at least three in four of each (other modalities are 4 slices;
    # run H's check lets MR_small through, docs/model.md).
    assert min(flagged.values()) >= 0.75, flagged


def test_out_of_scope_rows_keep_their_probability_and_give_a_reason(corpus_rows):
    row = next(row for row in corpus_rows["pictures"] if row.label == OUT_OF_SCOPE)
    assert row.probability is not None and not row.error
    assert row.scope.startswith(("not a chest radiograph", "rotated or inverted", "outside the training population"))
    assert "(" in row.scope  # the check's score follows the reason


def test_ordinary_validation_films_are_kept(scorer, tmp_path):
    folder = tmp_path / "films"
    for label in ("NORMAL", "PNEUMONIA"):
        (folder / label).mkdir(parents=True)
        for path in validation_scans(label, 60):
            shutil.copy(path, folder / label / path.name)
    summary = score_folder(folder, tmp_path / "films.csv", ScoreOptions(), scorer=scorer)
    assert summary.scored == 120
    assert summary.out_of_scope <= 3  # the card says 0.6 % of the report part; 3 of 120 is 2.5 %


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    """Two validation films and two pictures that are no chest films."""
    folder = tmp_path / "export"
    folder.mkdir()
    for path in validation_scans("PNEUMONIA", 2):
        shutil.copy(path, folder / path.name)
    (folder / "blank.png").write_bytes(cv2.imencode(".png", (cv2.UMat(300, 300, cv2.CV_8UC1, 0).get()))[1].tobytes())
    noise = cv2.randu(cv2.UMat(300, 300, cv2.CV_8UC1).get(), 0, 255)
    cv2.imwrite(str(folder / "noise.png"), noise)
    return folder


def test_a_run_with_out_of_scope_scans_exits_0_and_counts_them(mixed_folder, tmp_path):
    out = tmp_path / "results.csv"
    done = subprocess.run(
        [sys.executable, "-c", "from xscan.cli import app; app()", "score", str(mixed_folder), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == EXIT_OK, done.stderr
    assert "scored 4 (2 out of scope), failed 0" in done.stderr
    with open(out, newline="") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames[-1] == SCOPE_COLUMN
        rows = {Path(row["path"]).name: row for row in reader}
    for name in ("blank.png", "noise.png"):
        assert rows[name]["label"] == OUT_OF_SCOPE and rows[name]["probability"] and not rows[name]["error"]
        assert rows[name][SCOPE_COLUMN]
    assert all(
        row["label"] == "PNEUMONIA" and not row[SCOPE_COLUMN] for name, row in rows.items() if name.endswith(".jpeg")
    )


def test_report_lists_out_of_scope_rows_apart_from_the_confusion_matrix(mixed_folder, tmp_path, scorer):
    (mixed_folder / "PNEUMONIA").mkdir()
    for path in list(mixed_folder.iterdir()):
        if path.is_file():
            path.rename(mixed_folder / "PNEUMONIA" / path.name)
    score_folder(mixed_folder, tmp_path / "results.csv", ScoreOptions(), scorer=scorer)
    report = report_from_csv(tmp_path / "results.csv", FolderLabels(), bootstrap=0)
    assert report.evaluation.metrics["n"] == 2  # the two films; the blank and the noise are in no cell
    assert len(report.summary.out_of_scope) == 2
    assert any("judged out of scope" in note for note in report.notes)
    assert report.as_dict()["out_of_scope"] == 2


def test_no_scope_check_gives_every_readable_image_a_label(mixed_folder, tmp_path, scorer):
    summary = score_folder(mixed_folder, tmp_path / "results.csv", ScoreOptions(scope_check=False), scorer=scorer)
    assert summary.out_of_scope == 0
    rows = list(read_rows(tmp_path / "results.csv"))
    assert {row.label for row in rows} <= {"NORMAL", "PNEUMONIA"} and not any(row.scope for row in rows)


def test_a_card_without_a_scope_section_loads_and_scores_with_a_warning(tmp_path, mixed_folder):
    weights = tmp_path / "old-weights"
    shutil.copytree(default_weights_dir(), weights)
    card = json.loads((weights / CARD_FILE).read_text())
    card["scope"] = {}
    (weights / CARD_FILE).write_text(json.dumps(card))
    assert load_scorer(weights).notes == [NO_SCOPE_CHECK]
    events = []
    summary = score_folder(
        mixed_folder, tmp_path / "results.csv", ScoreOptions(weights=weights), on_event=events.append
    )
    assert summary.scored == 4 and summary.out_of_scope == 0
    assert Notice(NO_SCOPE_CHECK) in events


@needs_data
def test_training_films_of_the_fullres_originals_are_kept(scorer, tmp_path):
    # Full-resolution originals go through the reduced JPEG decode, unlike the 224-pixel training copies.
    folder = tmp_path / "fullres"
    shutil.copytree(FULLRES, folder)
    summary = score_folder(folder, tmp_path / "fullres.csv", ScoreOptions(), scorer=scorer)
    assert summary.scored == 120 and summary.out_of_scope <= 3
    assert TRAIN.is_dir()


def test_folding_the_scope_networks_batch_norms_keeps_its_logits():
    import numpy as np

    from xscan.model.scope import ScopeConfig, build_scope_model, fold_scope_batch_norms

    config, rng = ScopeConfig(widths=(4, 8)), np.random.default_rng(3)
    network = build_scope_model(config, 32)
    with_trained_batch_norms(network, rng)
    batch = rng.random((4, 32, 32, 1), dtype=np.float32)
    folded = fold_scope_batch_norms(network, config, 32)
    assert not any(layer.name.endswith("_bn") for layer in folded.layers)
    expected = np.asarray(network(batch, training=False))
    assert np.allclose(np.asarray(folded(batch, training=False)), expected, rtol=1e-4, atol=1e-4)
    assert np.abs(expected).max() > 1e-3


def test_a_scope_file_that_does_not_match_the_card_is_a_weights_error(tmp_path):
    from xscan.errors import WeightsError

    weights = tmp_path / "weights"
    shutil.copytree(default_weights_dir(), weights)
    with open(weights / "xscan-features.npz", "ab") as features:
        features.write(b"x")
    with pytest.raises(
        WeightsError, match="cannot load the out-of-scope check: .*xscan-features.npz does not match its model card"
    ):
        load_scorer(weights)
    assert load_scorer(weights, scope_check=False).scope_check is None  # without the check, the file is not needed
