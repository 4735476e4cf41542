"""No file can stop a night: a seeded, mutation-fuzzed corpus of real films and DICOMs, each file exactly one row.

The corpus (tests/support/fuzz.py) is decoded with `load_scan` alone (no model), so 1,200 files
take seconds; then a sample goes through a real `xscan score` process, as cron runs it.
benchmarks/fuzz.py runs the same on 20,000 files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from support.data import DATA, REPO, needs_data
from support.fuzz import MUTATIONS, seeds, write_corpus

from xscan.errors import CELL_LIMIT, EXIT_OK, EXIT_SOME_FAILED
from xscan.input.file_warnings import collected, warnings_kept
from xscan.scoring.options import DicomOptions
from xscan.scoring.pipeline import load_scan
from xscan.scoring.results import Row, read_table

pytestmark = needs_data  # the corpus is made from real films of the data set

CORPUS_SIZE = 1200
SAMPLE_EVERY = 20  # of the corpus, for the `xscan score` runs: 60 files
XSCAN = [sys.executable, "-c", "import sys\nfrom xscan.cli import app\napp(sys.argv[1:], prog_name='xscan')"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return write_corpus(tmp_path_factory.mktemp("fuzz"), CORPUS_SIZE, seed=24, sources=seeds(DATA))


def test_the_corpus_is_the_same_for_the_same_seed(tmp_path: Path, corpus) -> None:
    again = write_corpus(tmp_path, 25, seed=24, sources=seeds(DATA))
    assert [file.path.read_bytes() for file in again] == [file.path.read_bytes() for file in corpus[:25]]
    assert Counter(file.mutation for file in corpus) == dict.fromkeys(MUTATIONS, CORPUS_SIZE // len(MUTATIONS))
    assert {file.path.suffix for file in corpus} == {".jpeg", ".png", ".dcm"}


@pytest.mark.parametrize("frontal_only", [True, False])
def test_every_fuzzed_file_becomes_one_loaded_scan_and_none_raises(corpus, frontal_only: bool) -> None:
    outcomes = Counter()
    with warnings_kept():
        for file in corpus:
            with collected():
                loaded = load_scan(file.path, 224, DicomOptions(frontal_only=frontal_only))
            assert (loaded.model_input is None) == bool(loaded.error), file.path.name
            cell = Row(str(file.path), None, 0.5, "model", loaded.error).error  # as score_batch makes its row
            assert cell.isprintable() and 0 < len(cell) <= CELL_LIMIT or not loaded.error, (file.path.name, cell)
            outcomes["scored" if loaded.model_input is not None else "error"] += 1
    # Both kinds occur: the corpus is neither all refused at the signature nor all harmless.
    assert outcomes["scored"] > CORPUS_SIZE // 10 and outcomes["error"] > CORPUS_SIZE // 4, outcomes


@pytest.mark.slow
def test_a_real_run_over_a_sample_exits_0_or_4_one_row_each_nothing_on_stderr_and_a_rerun_agrees(
    tmp_path: Path, corpus
) -> None:
    folder = tmp_path / "night"
    folder.mkdir()
    sample = corpus[::SAMPLE_EVERY]
    for file in sample:
        os.link(file.path, folder / file.path.name)
    out = tmp_path / "r.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = []
    for _ in range(2):
        done = subprocess.run(
            [*XSCAN, "score", folder, "-o", out, "--quiet", "--workers", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode in (EXIT_OK, EXIT_SOME_FAILED), done.stderr
        assert done.stderr == ""
        records = read_table(out).records
        assert sorted(Path(record["path"]).name for record in records) == sorted(file.path.name for file in sample)
        runs.append({record["path"]: (record["probability"], record["error"]) for record in records})
    assert runs[0] == runs[1]
