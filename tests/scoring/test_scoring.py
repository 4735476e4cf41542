"""The streaming core: rows in input order across batches and errors, batching that changes no score, the threshold."""

import numpy as np
import pytest
from support.data import real_scans

from xscan.scoring.options import ScoreOptions
from xscan.scoring.pipeline import load_scan, score_paths


def test_rows_keep_input_order_across_batches_and_errors(tmp_path, scorer):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    paths = real_scans("NORMAL", 3) + [broken] + real_scans("PNEUMONIA", 4)
    batches = list(score_paths(paths, scorer, ScoreOptions(batch_size=3, workers=2)))
    rows = [row for batch in batches for row in batch]
    assert [row.path for row in rows] == [str(p) for p in paths]
    assert rows[3].error and rows[3].probability is None
    readable = [path for path in paths if path != broken]
    alone = scorer.probabilities(np.stack([load_scan(path, scorer.card.image_size).model_input for path in readable]))
    assert [row.probability for row in rows if not row.error] == pytest.approx(
        alone, abs=1e-7
    )  # each row its own file's score
    assert [len(batch) for batch in batches] == [3, 3, 2]  # 8 files in batches of 3; the error is one of them


def test_a_run_of_unreadable_files_is_flushed_batch_by_batch(tmp_path, scorer):
    junk = []
    for index in range(5):
        junk.append(tmp_path / f"junk{index}.png")
        junk[-1].write_bytes(b"")
    assert [len(batch) for batch in score_paths(junk, scorer, ScoreOptions(batch_size=2))] == [2, 2, 1]


def test_batching_does_not_change_scores(scorer):
    paths = real_scans("PNEUMONIA", 5)
    one = [r.probability for b in score_paths(paths, scorer, ScoreOptions(batch_size=1)) for r in b]
    five = [r.probability for b in score_paths(paths, scorer, ScoreOptions(batch_size=5)) for r in b]
    assert one == five  # the model always runs on chunks of the same size: a resumed run writes the same numbers


def test_threshold_override_is_used_for_labels(scorer):
    rows = [r for b in score_paths(real_scans("NORMAL", 2), scorer, ScoreOptions(threshold=0.0)) for r in b]
    assert all(r.threshold == 0.0 and r.label == "PNEUMONIA" for r in rows)


def test_load_scan_reports_errors_as_values(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    loaded = load_scan(empty, 160)
    assert loaded.model_input is None and loaded.error == "empty file (0 bytes)"
