"""`xscan report` and `xscan score --labels` through Typer's runner, on real scans and hand-made CSVs."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xscan.cli import app
from xscan.scoring.results import ResultsWriter, Row
from xscan.scoring.run import score_folder


@pytest.fixture
def scored(scan_folder: Path, tmp_path: Path, scorer) -> Path:
    """Results of the bundled model on 6 NORMAL + 6 PNEUMONIA real validation scans."""
    out = tmp_path / "results.csv"
    assert score_folder(scan_folder, out, scorer=scorer).exit_code == 0
    return out


def _table_row(output: str, name: str) -> list[str]:
    """The cells of the table line that starts with NAME."""
    line = next(line for line in output.splitlines() if line.strip(" │┃").startswith(name))
    return re.findall(r"\d+\.\d+|\d+|undefined", line[line.index(name) + len(name) :])


def _shown(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def test_json_agrees_with_the_tables_on_real_scans(scored: Path) -> None:
    as_json = CliRunner().invoke(app, ["report", str(scored), "--labels", "--json", "--bootstrap", "200"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert (data["n"], data["tp"] + data["fn"], data["tn"] + data["fp"], data["rows"], data["errors"]) == (
        12,
        6,
        6,
        12,
        0,
    )
    tables = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["report", str(scored), "--labels", "--bootstrap", "200"])
    assert tables.exit_code == 0, tables.output
    out = tables.stdout
    assert _table_row(out, "actual PNEUMONIA") == [str(data["tp"]), str(data["fn"]), "6"]
    assert _table_row(out, "actual NORMAL") == [str(data["fp"]), str(data["tn"]), "6"]
    for key, name in (
        ("sensitivity", "sensitivity (recall)"),
        ("specificity", "specificity"),
        ("npv", "NPV"),
        ("accuracy", "accuracy"),
        ("auc", "ROC AUC"),
        ("average_precision", "average precision"),
    ):
        interval = data["intervals"][key]
        # An interval may be undefined (null in JSON): then the table shows the value alone.
        expected = [_shown(data[key])] + (
            [] if interval["low"] is None else [_shown(interval["low"]), _shown(interval["high"])]
        )
        assert _table_row(out, name) == expected, name
    assert f"threshold {data['threshold']:.6f} from the CSV" in out
    assert "not a diagnostic device" in out


@pytest.mark.slow
def test_score_with_labels_prints_the_report(scan_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    result = CliRunner().invoke(app, ["score", str(scan_folder), "-o", str(out), "--labels"])
    assert result.exit_code == 0, result.output
    assert "confusion matrix" in result.stdout and "operating points" in result.stdout
    assert "NORMAL / PNEUMONIA folder names" in result.stdout
    report = CliRunner().invoke(app, ["report", str(out), "--labels", "--bootstrap", "0"])
    assert _table_row(result.stdout, "actual PNEUMONIA") == _table_row(report.stdout, "actual PNEUMONIA")


@pytest.mark.slow
def test_score_to_stdout_with_labels_reports_on_stderr(scan_folder: Path) -> None:
    result = CliRunner().invoke(app, ["score", str(scan_folder), "-o", "-", "--labels", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("path,probability,label,threshold,model,error")
    assert "confusion matrix" not in result.stdout
    assert "confusion matrix" in result.stderr and "standard output: 12 rows" in result.stderr


def _hand_made(tmp_path: Path) -> Path:
    path = tmp_path / "results.csv"
    with ResultsWriter(path) as writer:
        writer.write(
            [
                Row("/d/PNEUMONIA/a.png", 0.9, 0.5, "m"),
                Row("/d/PNEUMONIA/b.png", 0.4, 0.5, "m"),
                Row("/d/NORMAL/c.png", 0.2, 0.5, "m"),
                Row("/d/NORMAL/d.png", None, 0.5, "m", "unreadable"),
            ]
        )
    return path


def test_without_labels_prints_counts_and_histogram(tmp_path: Path) -> None:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["report", str(_hand_made(tmp_path))])
    assert result.exit_code == 0, result.output
    assert _table_row(result.stdout, "predicted PNEUMONIA") == []  # the header; counts are on the next line
    assert re.search(
        r"│\s+1 │\s+2 │\s+0 │\s+1 │\s+4 │", result.stdout
    )  # positive, negative, out of scope, errors, total
    assert re.search(r"0\.9-1\.0\s+1\s+#+", result.stdout)
    assert "/d/NORMAL/d.png: unreadable" in result.stdout


def test_plots_are_written(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["report", str(_hand_made(tmp_path)), "--labels", "--plots", str(tmp_path / "p"), "--bootstrap", "10"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in (tmp_path / "p").iterdir()) == [
        "calibration.png",
        "confusion-matrix.png",
        "histogram.png",
        "precision-recall.png",
        "roc.png",
    ]
    assert f"wrote {tmp_path / 'p' / 'roc.png'}" in result.stderr


def test_plots_without_matplotlib_fail_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = CliRunner().invoke(app, ["report", str(_hand_made(tmp_path)), "--labels", "--plots", str(tmp_path / "p")])
    assert result.exit_code == 3
    assert "pip install 'xscan[plots]'" in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    ("content", "arguments", "message"),
    [
        ("", [], "is empty"),
        ("path,probability,label,threshold,model,error\n", [], "has no rows"),
        ("file,score\na.png,0.3\n", [], "missing column(s) path, probability, label, threshold, model, error"),
        (None, ["--labels-file", "{labels}"], "no row got ground truth from labels file"),
        (None, ["--labels", "--labels-file", "{labels}"], "use --labels or --labels-file, not both"),
        (None, ["--labels-file", "{results}"], "is an xscan results file: its label column is the model's prediction"),
        (None, ["--labels-file", "{scores}"], "not a labels file: missing column(s) label"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    tmp_path: Path, content: str | None, arguments: list[str], message: str
) -> None:
    results = _hand_made(tmp_path)
    if content is not None:
        results.write_text(content)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\nnothing-here.png,NORMAL\n")
    scores = tmp_path / "scores.csv"
    scores.write_text("path,score\na.png,0.3\n")
    filled = [a.format(labels=labels, results=results, scores=scores) for a in arguments]
    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["report", str(results), *filled])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stdout == ""


def test_missing_results_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope.csv")])
    assert result.exit_code == 2


def test_help_has_an_example_and_the_disclaimer() -> None:
    result = CliRunner().invoke(app, ["report", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    example = text[text.index("Example:") : text.index("Arguments:")]
    assert "xscan report results.csv --labels" in example
    assert "aids a physician; it is not a diagnostic device" in text
