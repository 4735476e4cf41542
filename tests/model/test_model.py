import json
from dataclasses import asdict

import numpy as np
import pytest
from support.model import with_trained_batch_norms

from xscan.errors import WeightsError
from xscan.model.bundle import save_bundle
from xscan.model.card import CARD_FILE, LITERT_FILE, WEIGHTS_FILE, ModelCard, default_weights_dir, read_card
from xscan.model.network import STEM_CONV, ModelConfig, build_model, fold_batch_norms, member_logit_layer, member_logits
from xscan.model.scorer import load_scorer


def _card(config: ModelConfig) -> ModelCard:
    return ModelCard(
        name="t",
        version="0",
        config=asdict(config),
        preprocessing={"image_size": config.image_size},
        temperature=2.0,
        bias=0.0,
        threshold=0.4,
        threshold_rule="test",
    )


def test_bundle_round_trip_scores_the_same(tmp_path):
    config = ModelConfig(image_size=64, widths=(4, 8))
    network = build_model(config)
    batch = np.random.default_rng(0).random((3, 64, 64, 1), dtype=np.float32)
    card = save_bundle(network, _card(config), tmp_path)
    scorer = load_scorer(tmp_path)
    expected = 1 / (1 + np.exp(-np.asarray(network(batch)).reshape(-1) / 2.0))
    assert np.allclose(scorer.probabilities(batch), expected, atol=1e-5)
    assert scorer.card.model_id == f"t-0-{card.weights_sha256[:8]}"


def test_a_litert_file_that_does_not_match_its_card_is_refused(tmp_path):
    config = ModelConfig(image_size=32, widths=(4,))
    save_bundle(build_model(config), _card(config), tmp_path)
    card = json.loads((tmp_path / CARD_FILE).read_text())
    card["litert"]["sha256"] = "0" * 64
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match=f"{LITERT_FILE} does not match"):
        load_scorer(tmp_path)


def test_keras_weights_that_do_not_match_their_card_are_refused_where_they_are_read(tmp_path):
    config = ModelConfig(image_size=32, widths=(4,))
    save_bundle(build_model(config), _card(config), tmp_path)
    card = json.loads((tmp_path / CARD_FILE).read_text())
    card["weights_sha256"] = "0" * 64
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    scorer = load_scorer(tmp_path)  # scoring reads the LiteRT file only
    with pytest.raises(WeightsError, match=f"{WEIGHTS_FILE} does not match"):
        scorer.network  # noqa: B018  (Grad-CAM's Keras network: loading it checks the weights)


def test_a_card_without_a_litert_file_says_how_to_make_one(tmp_path):
    config = ModelConfig(image_size=32, widths=(4,))
    save_bundle(build_model(config), _card(config), tmp_path)
    card = json.loads((tmp_path / CARD_FILE).read_text())
    del card["litert"]  # a card written before xscan train wrote the LiteRT file
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match=f"names no LiteRT file .*xscan train DATA --out {tmp_path} --litert-only"):
        load_scorer(tmp_path)


def test_the_bundled_litert_file_is_the_cards_and_was_made_by_xscan_train():
    card = read_card(default_weights_dir())
    assert card.litert.file == LITERT_FILE and card.litert.quantization == "none"
    assert card.litert.outputs == {"logit": 1, "features": 3 * 128, "scope_logits": 4, "cam": 25}
    assert card.training.litert_command.startswith("xscan train ") and "--litert-only" in card.training.litert_command
    assert (default_weights_dir() / LITERT_FILE).stat().st_size < 8_000_000


def test_saved_weights_hold_no_optimizer_state(tmp_path):
    config = ModelConfig(image_size=32, widths=(8, 16))
    save_bundle(build_model(config), _card(config), tmp_path / "fresh")  # never compiled: no optimizer at all
    network = build_model(config)
    network.compile(optimizer="adam", loss="mse")
    network.fit(np.zeros((4, 32, 32, 1), np.float32), np.zeros((4, 1), np.float32), verbose=0)  # builds Adam's slots
    save_bundle(network, _card(config), tmp_path / "trained")
    fresh, trained = ((tmp_path / name / WEIGHTS_FILE).stat().st_size for name in ("fresh", "trained"))
    assert trained <= 1.02 * fresh  # Adam's two slots per weight would add far more


def test_bundled_weights_stay_small():
    assert (default_weights_dir() / WEIGHTS_FILE).stat().st_size < 16_000_000


def test_missing_card_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="model card"):
        read_card(tmp_path)


def test_bundled_card_is_complete():
    card = read_card(default_weights_dir())
    assert (default_weights_dir() / WEIGHTS_FILE).exists()
    assert card.training.command.startswith("xscan train ")
    assert 0.5 < card.validation.auc <= 1 and card.validation.brier > 0 and card.validation.ece > 0
    assert card.training.data.train["NORMAL"] > 0 and card.training.data.report["PNEUMONIA"] > 0
    assert 0.0 < card.threshold < 1.0 and card.temperature > 0
    assert card.training.keras_version and card.training.xscan_version and card.training.started
    assert len(card.robustness) >= 10


def test_the_bundled_card_says_what_made_it():
    """The data the bundled model was trained on, recorded by `xscan train --reference-only` (which checked it)."""
    from xscan.training.provenance import KERMANY_SOURCE, KERMANY_TRAIN_SHA256

    card = read_card(default_weights_dir())
    data = card.training.data
    assert data.content_sha256 == KERMANY_TRAIN_SHA256 and data.source == KERMANY_SOURCE
    assert data.scans == {"NORMAL": 1341, "PNEUMONIA": 3875}  # the Kermany training split: 5,216 films
    assert sum(data.scans.values()) == sum(sum(part.values()) for part in (data.train, data.selection, data.report))
    assert data.patients == data.train_patients + data.selection_patients + data.report_patients  # patient-disjoint
    assert card.training.reference_command.startswith("xscan train ") and "--reference-only" in (
        card.training.reference_command
    )
    assert "Kermany" in card.intended_population


def test_a_card_in_the_shape_before_issue_29_still_loads_with_its_model_id(tmp_path):
    """Class weights by index, external subsets by phrase, no data hash: read as today's typed card, same model id."""
    import shutil

    from xscan.model.card import DriftSection, ExternalFigures, ScopeSection, TrainingData

    shutil.copytree(default_weights_dir(), tmp_path / "w")
    stored = json.loads((tmp_path / "w" / CARD_FILE).read_text())
    data = stored["training"]["data"]
    for key in ("scans", "patients", "train_patients", "content_sha256", "labels_file"):
        data.pop(key, None)
    stored["training"]["class_weights"] = {"0": 1.9, "1": 0.7}
    stored["external"][0]["PA films"] = stored["external"][0].pop("pa_films")
    stored["external"][0]["kept by the scope check"] = stored["external"][0].pop("kept_by_scope_check")
    (tmp_path / "w" / CARD_FILE).write_text(json.dumps(stored))
    card = read_card(tmp_path / "w")
    assert card.model_id == read_card(default_weights_dir()).model_id
    assert isinstance(card.training.data, TrainingData) and card.training.data.content_sha256 == ""
    assert card.training.class_weights == {"NORMAL": 1.9, "PNEUMONIA": 0.7}
    assert isinstance(card.external[0], ExternalFigures) and card.external[0].pa_films.n > 0
    assert isinstance(card.scope, ScopeSection) and isinstance(card.drift, DriftSection)
    written = json.loads(card.to_json())  # written in today's shape
    assert (
        written["training"]["class_weights"] == {"NORMAL": 1.9, "PNEUMONIA": 0.7}
        and "pa_films" in written["external"][0]
    )


def test_a_card_with_an_unknown_field_is_refused_not_trimmed(tmp_path):
    config = ModelConfig(image_size=32, widths=(4,))
    save_bundle(build_model(config), _card(config), tmp_path)
    card = json.loads((tmp_path / CARD_FILE).read_text())
    card["litert"]["heat"] = 1
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="not valid"):
        read_card(tmp_path)


def test_an_ensemble_outputs_the_mean_of_its_members_logits():
    config = ModelConfig(image_size=32, widths=(4, 8), members=3)
    network = build_model(config)
    batch = np.random.default_rng(1).random((5, 32, 32, 1), dtype=np.float32)
    per_member = np.asarray(member_logits(network, 3)(batch, training=False))
    assert per_member.shape == (5, 3)
    assert not np.allclose(per_member[:, 0], per_member[:, 1])  # independently initialised
    assert np.allclose(np.asarray(network(batch, training=False)).reshape(-1), per_member.mean(axis=1), atol=1e-6)


def test_each_members_gradient_depends_on_its_own_output_only():
    import keras
    import tensorflow as tf

    network = build_model(ModelConfig(image_size=32, widths=(4, 8), members=2))
    trainable = member_logits(network, 2)
    batch = tf.constant(np.random.default_rng(2).random((4, 32, 32, 1), dtype=np.float32))
    labels = tf.constant([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    loss = keras.losses.BinaryCrossentropy(from_logits=True)
    kernel = network.get_layer(member_logit_layer(1)).kernel

    def gradient_of_member_1():
        with tf.GradientTape() as tape:
            value = loss(labels, trainable(batch, training=False))
        return np.asarray(tape.gradient(value, kernel))

    before = gradient_of_member_1()
    other = network.get_layer(member_logit_layer(0))
    other.kernel.assign(other.kernel + 1.0)  # change member 0 only
    assert np.allclose(gradient_of_member_1(), before, atol=1e-7)


def test_an_ensemble_round_trips_through_its_bundle(tmp_path):
    config = ModelConfig(image_size=32, widths=(4, 8), members=2)
    network = build_model(config)
    batch = np.random.default_rng(3).random((3, 32, 32, 1), dtype=np.float32)
    save_bundle(network, _card(config), tmp_path)
    expected = 1 / (1 + np.exp(-np.asarray(network(batch)).reshape(-1) / 2.0))
    assert np.allclose(load_scorer(tmp_path).probabilities(batch), expected, atol=1e-5)


def test_the_scorer_applies_the_cards_temperature_and_bias(tmp_path):
    config = ModelConfig(image_size=32, widths=(4,), members=1)
    network = build_model(config)
    card = _card(config)
    card.bias = 1.5
    save_bundle(network, card, tmp_path)
    batch = np.random.default_rng(4).random((2, 32, 32, 1), dtype=np.float32)
    logits = np.asarray(network(batch)).reshape(-1)
    assert np.allclose(load_scorer(tmp_path).probabilities(batch), 1 / (1 + np.exp(-(logits / 2.0 + 1.5))), atol=1e-5)


def test_folding_batch_norms_keeps_the_function():
    config = ModelConfig(image_size=32, widths=(4, 8), members=2)
    network = build_model(config)
    rng = np.random.default_rng(5)
    with_trained_batch_norms(network, rng)
    batch = rng.random((4, 32, 32, 1), dtype=np.float32)
    folded = fold_batch_norms(network, config)
    assert not any(layer.name.endswith("_bn") for layer in folded.layers)
    assert [layer.name for layer in folded.layers if layer.name.endswith("s0_a_conv") or layer.name == STEM_CONV] == [
        STEM_CONV
    ]
    expected = np.asarray(network(batch, training=False))
    assert np.allclose(np.asarray(folded(batch, training=False)), expected, rtol=1e-4, atol=1e-4)
    assert np.abs(expected).max() > 1e-3  # a real signal went through
