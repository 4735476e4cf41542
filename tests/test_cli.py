import csv
import re
from pathlib import Path

import pytest
from conftest import SAMPLES
from typer.testing import CliRunner

from xscan.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
COMMANDS = sorted(command.name or command.callback.__name__ for command in app.registered_commands)


def _read(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_score_end_to_end_on_real_scans(scan_folder, tmp_path):
    out = tmp_path / "results.csv"
    result = CliRunner().invoke(app, ["score", str(scan_folder), "-o", str(out), "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    rows = _read(out)
    assert list(rows[0])[:6] == ["path", "probability", "label", "threshold", "model", "error"]
    assert len(rows) == 12
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    assert all(0.0 <= float(r["probability"]) <= 1.0 and r["error"] == "" for r in rows)
    assert all(re.fullmatch(r"\d\.\d{6}", r["probability"]) for r in rows)
    mean = {label: sum(float(r["probability"]) for r in rows if f"/{label}/" in r["path"]) / 6
            for label in ("NORMAL", "PNEUMONIA")}
    assert mean["PNEUMONIA"] > mean["NORMAL"]
    assert re.search(r"scored 12, failed 0 in [\d.]+ s \([\d.]+ images/s\)", result.stderr)


def test_bundled_samples_score_on_the_right_side_of_the_threshold(tmp_path):
    out = tmp_path / "samples.csv"
    result = CliRunner().invoke(app, ["score", str(SAMPLES), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = _read(out)
    assert len(rows) == 8
    assert all(r["label"] in r["path"] for r in rows), [(r["path"], r["probability"]) for r in rows]


def test_stdout_output_keeps_messages_on_stderr(scan_folder):
    result = CliRunner().invoke(app, ["score", str(scan_folder), "-o", "-", "--threshold", "0.3"])
    assert result.exit_code == 0
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert len(rows) == 12 and all(r["threshold"] == "0.300000" for r in rows)
    assert "scored 12" in result.stderr and "scored" not in result.stdout


def test_quiet_prints_nothing(scan_folder, tmp_path):
    result = CliRunner().invoke(app, ["score", str(scan_folder), "-o", str(tmp_path / "r.csv"), "--quiet"])
    assert result.exit_code == 0 and result.stderr == ""


def test_missing_folder_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["score", str(tmp_path / "nope"), "-o", str(tmp_path / "r.csv")])
    assert result.exit_code == 2
    assert "not a folder" in result.stderr


def test_info_prints_the_model_card():
    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0
    assert "xscan-cnn" in result.stdout and "threshold" in result.stdout and "not a diagnostic device" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example_and_is_in_the_readme(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert f"xscan {command}" in README.read_text()


def test_top_level_help_says_it_is_not_a_diagnostic_device():
    result = CliRunner().invoke(app, ["--help"])
    assert "not a diagnostic device" in result.stdout
