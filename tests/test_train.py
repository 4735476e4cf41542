import shutil

import numpy as np
import pytest
from support.data import real_scans
from typer.testing import CliRunner

from xscan.cli import app
from xscan.model.card import WEIGHTS_FILE, calibrated_probability, model_config_from_card, read_card
from xscan.model.network import build_model
from xscan.model.scorer import load_scorer
from xscan.training.train import class_weights


@pytest.fixture
def tiny_dataset(tmp_path):
    """24 real scans of each class, from distinct patients, in NORMAL/ and PNEUMONIA/."""
    for label in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for path in real_scans(label, 24):
            shutil.copy(path, tmp_path / "data" / label / path.name)
    return tmp_path / "data"


def test_one_epoch_through_the_cli_writes_loadable_weights_and_card(tiny_dataset, tmp_path):
    out = tmp_path / "weights"
    result = CliRunner().invoke(
        app, ["train", str(tiny_dataset), "--out", str(out), "--epochs", "1", "--image-size", "64",
              "--val-fraction", "0.5", "--seed", "3", "--members", "1"],  # one member: what is written and loaded is the point
    )
    assert result.exit_code == 0, result.output
    card = read_card(out)
    assert card.training["command"].startswith("xscan train ")
    assert card.training["epochs_run"] == 1
    counts = card.training["data"]
    assert sum(sum(counts[part].values()) for part in ("train", "selection", "report")) == 48
    assert card.validation["n"] == sum(counts["report"].values())  # the card's figures: the part that chose nothing
    assert 0 < card.scope["in_scope_threshold"] < 1 and card.scope["distance_threshold"] > 0
    assert card.preprocessing["image_size"] == 64
    assert len(card.robustness) >= 10
    inputs = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 1)).astype(np.float32)
    # The same weights through Keras, the card's calibration applied here: the scorer must agree.
    network = build_model(model_config_from_card(card))
    network.load_weights(out / WEIGHTS_FILE)
    expected = calibrated_probability(np.asarray(network(inputs, training=False)).reshape(-1), card.temperature, card.bias)
    assert load_scorer(out).probabilities(inputs) == pytest.approx(expected, abs=1e-4)


def test_missing_class_folder_is_a_usage_error(tmp_path):
    (tmp_path / "NORMAL").mkdir()
    result = CliRunner().invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "w")])
    assert result.exit_code == 2
    assert "PNEUMONIA" in result.output


def test_class_weights_balance_the_classes():
    weights = class_weights(np.array([0] * 25 + [1] * 75))
    assert weights[0] * 25 == pytest.approx(weights[1] * 75)
    assert weights == {0: 2.0, 1: pytest.approx(2 / 3)}
