import shutil
from dataclasses import replace

import numpy as np
import pytest
from support.data import real_scans
from typer.testing import CliRunner

from xscan.cli import app
from xscan.model.card import WEIGHTS_FILE, calibrated_probability, model_config_from_card, read_card
from xscan.model.network import build_model
from xscan.model.scorer import load_scorer
from xscan.training.dataset import find_labelled_scans
from xscan.training.fit import class_weights
from xscan.training.provenance import NOT_STATED, SITE_GUIDANCE, content_sha256


@pytest.fixture
def tiny_dataset(tmp_path):
    """24 real scans of each class, from distinct patients, in NORMAL/ and PNEUMONIA/."""
    for label in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for path in real_scans(label, 24):
            shutil.copy(path, tmp_path / "data" / label / path.name)
    return tmp_path / "data"


@pytest.mark.slow
def test_one_epoch_through_the_cli_writes_loadable_weights_and_card(tiny_dataset, tmp_path):
    out = tmp_path / "weights"
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(tiny_dataset),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--image-size",
            "64",
            "--val-fraction",
            "0.5",
            "--seed",
            "3",
            "--members",
            "1",
        ],  # one member: what is written and loaded is the point
    )
    assert result.exit_code == 0, result.output
    card = read_card(out)
    assert card.training.command.startswith("xscan train ")
    assert card.training.epochs_run == 1
    data = card.training.data
    assert sum(sum(part.values()) for part in (data.train, data.selection, data.report)) == 48
    assert card.validation.n == sum(data.report.values())  # the card's figures: the part that chose nothing
    assert 0 < card.scope.in_scope_threshold < 1 and card.scope.distance_threshold > 0
    assert card.preprocessing.image_size == 64
    assert len(card.robustness) >= 10
    # What made it: this folder, its counts and hash; a folder that is not Kermany's is never said to be.
    scans = find_labelled_scans(tiny_dataset)
    assert data.folder == str(tiny_dataset) and data.scans == {"NORMAL": 24, "PNEUMONIA": 24}
    assert data.patients == len({scan.patient_id for scan in scans}) > 24  # a patient may have several films
    assert data.content_sha256 == content_sha256(scans, tiny_dataset)
    assert data.source == NOT_STATED and "Kermany" not in card.to_json() and "Guangzhou" not in card.to_json()
    assert card.site_guidance == SITE_GUIDANCE  # what a new site should expect travels with every card train writes
    assert str(tiny_dataset) in card.intended_population
    # The drift reference: every validation film (selection and report parts), scored by the bundle as saved.
    assert sum(card.drift.scans.values()) == sum(data.selection.values()) + sum(data.report.values())
    assert card.training.reference_command == card.training.command
    inputs = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 1)).astype(np.float32)
    # The same weights through Keras, the card's calibration applied here: the scorer must agree.
    network = build_model(model_config_from_card(card))
    network.load_weights(out / WEIGHTS_FILE)
    expected = calibrated_probability(
        np.asarray(network(inputs, training=False)).reshape(-1), card.temperature, card.bias
    )
    assert load_scorer(out).probabilities(inputs) == pytest.approx(expected, abs=1e-4)
    # A scope check fitted again changes the scope score: the drift reference is made again with it.
    refit = CliRunner().invoke(app, ["train", str(tiny_dataset), "--out", str(out), "--scope-only"])
    assert refit.exit_code == 0, refit.output
    again = read_card(out)
    assert (
        again.training.reference_command
        == again.training.scope_command
        == f"xscan train {tiny_dataset} --out {out} --scope-only"
    )
    assert again.training.data == data  # the same folder, so the same record
    # Another folder is not the data the model was trained on: refused, the card untouched.
    (tiny_dataset / "NORMAL" / next(iter(sorted((tiny_dataset / "NORMAL").iterdir()))).name).unlink()
    other = CliRunner().invoke(app, ["train", str(tiny_dataset), "--out", str(out), "--reference-only"])
    assert other.exit_code == 2 and "is not the data the model was trained on" in other.output
    assert read_card(out).to_json() == again.to_json()


def test_missing_class_folder_is_a_usage_error(tmp_path):
    (tmp_path / "NORMAL").mkdir()
    result = CliRunner().invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "w")])
    assert result.exit_code == 2
    assert "PNEUMONIA" in result.output


def test_class_weights_balance_the_classes():
    weights = class_weights(np.array([0] * 25 + [1] * 75))
    assert weights[0] * 25 == pytest.approx(weights[1] * 75)
    assert weights == {0: 2.0, 1: pytest.approx(2 / 3)}


def _without_litert(tmp_path):
    """A copy of the bundled weights folder as it was before xscan train wrote the LiteRT file."""
    import json

    from xscan.model.card import CARD_FILE, LITERT_FILE, default_weights_dir

    weights = tmp_path / "weights"
    shutil.copytree(default_weights_dir(), weights)
    (weights / LITERT_FILE).unlink()
    card = json.loads((weights / CARD_FILE).read_text())
    del card["litert"]
    card["training"]["litert_command"] = ""
    (weights / CARD_FILE).write_text(json.dumps(card))
    return weights


@pytest.mark.slow
def test_converting_an_older_weights_folder_gives_the_bundled_file_and_numbers(tmp_path, scorer):
    from xscan.training.convert import convert_to_litert

    weights = _without_litert(tmp_path)
    card = convert_to_litert(weights, "xscan train DATA --out weights --litert-only", log=lambda line: None)
    assert card.training.litert_command == "xscan train DATA --out weights --litert-only"
    # The same conversion of the same weights; the file's bytes may differ in the names Keras gives layers in a process.
    assert replace(card.litert, sha256="") == replace(scorer.card.litert, sha256="")
    assert card.model_id == scorer.card.model_id and read_card(weights).litert == card.litert
    batch = np.random.default_rng(0).random((5, 160, 160, 1), dtype=np.float32)
    assert np.array_equal(load_scorer(weights).assess(batch).probabilities, scorer.assess(batch).probabilities)


@pytest.mark.slow
def test_litert_only_through_the_cli_records_its_command(tmp_path):
    weights = _without_litert(tmp_path)
    result = CliRunner().invoke(app, ["train", str(tmp_path / "data"), "--out", str(weights), "--litert-only"])
    assert result.exit_code == 0, result.output
    card = read_card(weights)
    assert card.training.litert_command == f"xscan train {tmp_path / 'data'} --out {weights} --litert-only"
    assert load_scorer(weights).card.litert.sha256 == card.litert.sha256


@pytest.mark.parametrize(
    "flags",
    [("--scope-only", "--litert-only"), ("--litert-only", "--reference-only"), ("--scope-only", "--reference-only")],
)
def test_only_flags_are_exclusive(tmp_path, flags):
    """Two modes at once was a silent precedence; now a usage error naming both, before anything is read or written."""
    weights = tmp_path / "weights"
    result = CliRunner().invoke(app, ["train", str(tmp_path / "data"), "--out", str(weights), *flags])
    assert result.exit_code == 2
    assert f"{flags[0]} and {flags[1]} cannot be used together" in result.output
    assert not weights.exists()


def test_a_refit_on_another_folder_is_refused_for_a_card_without_a_hash(tiny_dataset, tmp_path):
    """A card from before issue 29 has no content hash: the folder's split counts must be the card's instead."""
    import json

    from xscan.errors import TrainingDataError
    from xscan.model.card import CARD_FILE, default_weights_dir
    from xscan.training.refit import refit_reference

    weights = tmp_path / "weights"
    shutil.copytree(default_weights_dir(), weights)
    card = json.loads((weights / CARD_FILE).read_text())
    card["training"]["data"]["content_sha256"] = ""
    (weights / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(TrainingDataError, match="is not the data the model was trained on.*train .*card: "):
        refit_reference(tiny_dataset, weights, "xscan train X --reference-only")
    assert json.loads((weights / CARD_FILE).read_text()) == card


def test_data_source_names_the_data_and_only_kermanys_hash_names_kermany(tiny_dataset):
    from xscan.training.config import TrainConfig
    from xscan.training.parts import split_for_training
    from xscan.training.provenance import KERMANY_SOURCE, intended_population, training_data

    scans = find_labelled_scans(tiny_dataset)
    split = split_for_training(scans, TrainConfig(val_fraction=0.5))
    stated = training_data(tiny_dataset, scans, split, data_source="St Elsewhere, 2025 portable films")
    assert stated.source == "St Elsewhere, 2025 portable films"
    assert "St Elsewhere" in intended_population(stated) and "Kermany" not in intended_population(stated)
    # Kermany's own files, but not all of them: not the Kermany training split, so not said to be.
    assert training_data(tiny_dataset, scans, split).source != KERMANY_SOURCE
    # Moved elsewhere, the same files and labels have the same hash.
    moved = tiny_dataset.parent / "moved"
    shutil.copytree(tiny_dataset, moved)
    assert content_sha256(find_labelled_scans(moved), moved) == stated.content_sha256
