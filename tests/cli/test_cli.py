import csv
import re
from pathlib import Path

import pytest
import typer
from support.data import SAMPLES, TRAIN, validation_scans
from typer.testing import CliRunner

from xscan.cli import app
from xscan.errors import (
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_SOFTWARE,
    EXIT_USAGE,
    LabelsError,
    UsageError,
    WeightsError,
)

README = Path(__file__).resolve().parents[2] / "README.md"
SAMPLES_README = SAMPLES.parent / "README.md"
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
    mean = {
        label: sum(float(r["probability"]) for r in rows if f"/{label}/" in r["path"]) / 6
        for label in ("NORMAL", "PNEUMONIA")
    }
    assert mean["PNEUMONIA"] > mean["NORMAL"]  # validation scans: the model never saw them
    assert re.search(r"scored 12, failed 0 in [\d.]+ s \([\d.]+ images/s\)", result.stderr)


def _sample_splits() -> dict[str, str]:
    """The split of each sample scan, as tests/data/README.md records it."""
    return dict(
        re.findall(r"^\| `([^`]+)` \| \w+ \| [\w-]+ \| (\w+) \|", SAMPLES_README.read_text(), flags=re.MULTILINE)
    )


def test_the_samples_readme_records_each_samples_split():
    held_out = {
        f"{path.parent.name}/{path.name}"
        for label in ("NORMAL", "PNEUMONIA")
        for path in validation_scans(label, 10_000)
    }
    samples = sorted(f"{path.parent.name}/{path.name}" for path in SAMPLES.rglob("*.jpeg"))
    assert sorted(_sample_splits()) == samples
    assert all((TRAIN / name).exists() for name in samples)
    assert {name for name, split in _sample_splits().items() if split == "validation"} == held_out.intersection(samples)


def test_bundled_samples_score_and_the_held_out_ones_on_the_right_side_of_the_threshold(tmp_path):
    out = tmp_path / "samples.csv"
    result = CliRunner().invoke(app, ["score", str(SAMPLES), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = {str(Path(r["path"]).relative_to(SAMPLES)): r for r in _read(out)}
    assert len(rows) == 8 and all(r["error"] == "" for r in rows.values())
    validation = [name for name, split in _sample_splits().items() if split == "validation"]
    assert validation and all(rows[name]["label"] == name.split("/")[0] for name in validation), rows


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


def test_info_shows_what_a_new_site_should_expect_when_the_card_holds_it(tmp_path):
    import json

    from xscan.model.card import CARD_FILE, default_weights_dir

    card = json.loads((default_weights_dir() / CARD_FILE).read_text())
    card["site_guidance"] = "Expect the threshold to move; run xscan calibrate."
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    shown = CliRunner().invoke(app, ["info", "--weights", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "At a new site: Expect the threshold to move; run xscan calibrate." in " ".join(shown.stdout.split())
    card.pop("site_guidance")
    (tmp_path / CARD_FILE).write_text(json.dumps(card))  # a card written before the field: nothing made up in its place
    assert "At a new site" not in CliRunner().invoke(app, ["info", "--weights", str(tmp_path)]).stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example_and_is_in_the_readme(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert f"xscan {command}" in README.read_text()


def test_top_level_help_says_it_is_not_a_diagnostic_device():
    result = CliRunner().invoke(app, ["--help"])
    assert "not a diagnostic device" in result.stdout


def test_train_options_default_to_the_recorded_recipe():
    from xscan.training.config import TrainConfig

    recipe = TrainConfig()
    result = CliRunner().invoke(app, ["train", "--help"])
    text = " ".join(result.stdout.split())  # help wraps anywhere, even inside [default: ...]
    shown = dict(re.findall(r"--([\w-]+) <[^>]+> [^\[]*\[default: ([^;\]]+)", text))
    assert shown == {
        "out": "weights",
        "epochs": str(recipe.epochs),
        "image-size": str(recipe.model.image_size),
        "members": str(recipe.model.members),
        "batch-size": str(recipe.batch_size),
        "val-fraction": str(recipe.val_fraction),
        "seed": str(recipe.seed),
    }


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (UsageError("no such folder"), EXIT_USAGE),
        (LabelsError("label 'x' is not one of ..."), EXIT_USAGE),
        (WeightsError("weights do not match their card"), EXIT_FATAL),
        (KeyboardInterrupt(), EXIT_INTERRUPTED),
        (AttributeError("a bug"), EXIT_SOFTWARE),
        (MemoryError(), EXIT_FATAL),
    ],
)
def test_one_wrapper_maps_every_error_to_its_exit_code_and_logs_it(raised, code, tmp_path, capsys):
    from xscan.cli.app import exit_codes, open_log

    with open_log(tmp_path / "run.log") as log, pytest.raises(typer.Exit) as stopped, exit_codes(log=log):
        raise raised
    assert stopped.value.exit_code == code
    assert (str(raised) or ("interrupted" if code == EXIT_INTERRUPTED else "out of memory")) in capsys.readouterr().err
    assert f"(exit {code})" in (tmp_path / "run.log").read_text()


def test_the_wrapper_shows_a_bugs_traceback_with_debug_and_still_exits_70(capsys):
    from xscan.cli.app import exit_codes

    with pytest.raises(typer.Exit) as stopped, exit_codes(debug=True):
        raise AttributeError("a bug")
    assert stopped.value.exit_code == EXIT_SOFTWARE
    err = capsys.readouterr().err
    assert "Traceback" in err and "AttributeError: a bug" in err
