"""`xscan audit` on results the real model scored: exit 0 (holds), 5 (broken), 2 (too few reads, an empty reads file).

Exit codes are checked on real processes (Typer's runner shows a crash as exit 1); messages through the runner.
"""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.data import NIH, real_scans, validation_scans
from support.processes import ENV
from typer.testing import CliRunner

from xscan.cli import app
from xscan.errors import EXIT_DRIFT, EXIT_OK, EXIT_USAGE
from xscan.model.card import default_weights_dir, read_card
from xscan.stats import cusum

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]

CARD = read_card(default_weights_dir())
# Reads of each class that the card's figures need before the audit can tell (a 10-point drop, 80 % power, 2.5 %).
NEEDED = {
    label: cusum.reads_needed(cusum.chart_for(getattr(CARD.validation, figure)), 0.025)
    for label, figure in (("NORMAL", "specificity"), ("PNEUMONIA", "sensitivity"))
}


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> dict[str, list[str]]:
    """`xscan score` once on validation films that chose nothing (enough of each class to tell) and 10 adult normals.

    Returns the scored paths by group: validation NORMAL and PNEUMONIA, adult NORMAL; results.csv beside them.
    """
    base = tmp_path_factory.mktemp("audit")
    groups = {
        "NORMAL": validation_scans("NORMAL", NEEDED["NORMAL"] + 2),
        "PNEUMONIA": validation_scans("PNEUMONIA", NEEDED["PNEUMONIA"] + 2),
        "adult NORMAL": real_scans("NORMAL", 10, NIH),
    }
    for group, paths in groups.items():
        folder = base / "scans" / group.replace(" ", "-")
        folder.mkdir(parents=True)
        for path in paths:
            shutil.copy(path, folder / path.name)
    done = subprocess.run(
        [sys.executable, "-m", "xscan.cli", "score", str(base / "scans"), "-o", str(base / "results.csv"), "-q"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == EXIT_OK, done.stderr
    with open(base / "results.csv", newline="") as stream:
        paths = [record["path"] for record in csv.DictReader(stream)]
    return {
        "results": [str(base / "results.csv")],
        "NORMAL": [p for p in paths if "/NORMAL/" in p],
        "PNEUMONIA": [p for p in paths if "/PNEUMONIA/" in p],
        "adult NORMAL": [p for p in paths if "/adult-NORMAL/" in p],
    }


def reads_file(path: Path, reads: list[tuple[str, str, str]]) -> Path:
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "label", "read_at"])
        writer.writerows(reads)
    return path


def label_reads(paths: list[str], label: str, day: int = 2) -> list[tuple[str, str, str]]:
    return [(path, label, f"2026-03-{day:02d}T{8 + i % 10:02d}:00") for i, path in enumerate(paths)]


def audit_process(results: str, reads: Path, *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "xscan.cli", "audit", results, "--reads", str(reads), *options]
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)


def test_validation_films_keep_the_card_s_promise_exit_0(scored, tmp_path):
    reads = label_reads(scored["NORMAL"], "NORMAL") + label_reads(scored["PNEUMONIA"], "PNEUMONIA", day=9)
    done = audit_process(scored["results"][0], reads_file(tmp_path / "reads.csv", reads))
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    assert "audit: the promise holds" in done.stdout
    assert f"specificity >= {CARD.validation.specificity:.3f} (model card of {CARD.model_id}" in done.stdout
    assert "2026-W10" in done.stdout and "2026-W11" in done.stdout


def test_adult_films_from_another_hospital_break_it_exit_5(scored, tmp_path):
    done = audit_process(
        scored["results"][0], reads_file(tmp_path / "reads.csv", label_reads(scored["adult NORMAL"], "NORMAL"))
    )
    assert done.returncode == EXIT_DRIFT, done.stdout + done.stderr
    assert "audit: the promise is broken on 10 reads: specificity below" in done.stdout


def test_too_few_reads_say_how_many_would_tell_exit_2(scored, tmp_path):
    reads = label_reads(scored["NORMAL"][:10], "NORMAL") + label_reads(scored["PNEUMONIA"][:10], "PNEUMONIA")
    done = audit_process(scored["results"][0], reads_file(tmp_path / "reads.csv", reads), "--by", "month")
    assert done.returncode == EXIT_USAGE, done.stdout + done.stderr
    assert (
        f"too few reads to tell: {NEEDED['PNEUMONIA']} pneumonia reads (have 10), {NEEDED['NORMAL']} normal reads "
        "(have 10) would detect a drop of 10 points with chance 80% at level 5%"
    ) in done.stdout


def test_an_empty_reads_file_is_refused_exit_2(scored, tmp_path):
    (tmp_path / "reads.csv").write_text("path,label,read_at\n")
    result = CliRunner().invoke(app, ["audit", scored["results"][0], "--reads", str(tmp_path / "reads.csv")])
    assert result.exit_code == EXIT_USAGE
    assert "has a header but no reads: nothing to audit" in " ".join(result.stderr.split())


def test_unmatched_duplicated_and_contradicting_reads_are_each_said(scored, tmp_path):
    normal, pneumonia = scored["NORMAL"], scored["PNEUMONIA"]
    reads = [
        (normal[0], "NORMAL", "2026-03-02"),
        (normal[0], "NORMAL", "2026-03-03"),
        (pneumonia[0], "NORMAL", "2026-03-02"),
        (pneumonia[0], "PNEUMONIA", "2026-03-04"),
        ("/nowhere/film.png", "NORMAL", "2026-03-02"),
    ]
    result = CliRunner().invoke(
        app, ["audit", scored["results"][0], "--reads", str(reads_file(tmp_path / "reads.csv", reads))]
    )
    assert result.exit_code == EXIT_USAGE  # two reads: too few to tell
    text = " ".join(result.stdout.split())
    assert "1 read(s) matched no result (left out): /nowhere/film.png" in text
    assert f"1 key(s) read more than once: {normal[0]}: read NORMAL 2 times (lines 2, 3): counted once" in text
    assert f"1 key(s) read with both labels: {pneumonia[0]}: read NORMAL at 2026-03-02T00:00:00 (line 4)" in text
    assert "the later read counts" in text
    as_json = CliRunner().invoke(app, ["audit", scored["results"][0], "--reads", str(tmp_path / "reads.csv"), "--json"])
    found = json.loads(as_json.stdout)
    assert found["unmatched"] == ["/nowhere/film.png"] and found["verdict"] == "too few reads to tell"
    assert [period["pneumonia"] for period in found["periods"]] == [1]


def test_the_plot_is_drawn(scored, tmp_path):
    pytest.importorskip("matplotlib")
    reads = label_reads(scored["adult NORMAL"], "NORMAL") + label_reads(scored["PNEUMONIA"][:5], "PNEUMONIA", 20)
    result = CliRunner().invoke(
        app,
        [
            "audit",
            scored["results"][0],
            "--reads",
            str(reads_file(tmp_path / "reads.csv", reads)),
            "--promise-sensitivity",
            "0.9",
            "--plot",
            str(tmp_path / "audit.png"),
        ],
    )
    assert result.exit_code == EXIT_DRIFT, result.output
    assert "promise: sensitivity >= 0.900 (--promise-sensitivity)" in result.stdout
    assert (tmp_path / "audit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_review_page_shows_the_audit_when_given_reads(scored, tmp_path):
    pytest.importorskip("matplotlib")
    reads = reads_file(tmp_path / "reads.csv", label_reads(scored["adult NORMAL"], "NORMAL"))
    result = CliRunner().invoke(
        app,
        ["report", scored["results"][0], "--labels", "--html", str(tmp_path / "page"), "--gallery", "0"]
        + ["--reads", str(reads)],
    )
    assert result.exit_code == EXIT_OK, result.output
    page = (tmp_path / "page" / "index.html").read_text()
    assert '<section id="audit" data-verdict="broken">' in page
    assert "audit: the promise is broken on 10 reads" in page and "<td>2026-W10</td>" in page
    assert (tmp_path / "page" / "plots" / "audit.png").read_bytes()[:4] == b"\x89PNG"
