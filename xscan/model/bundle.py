"""Writing a weights folder: the Keras weights, the LiteRT file scoring runs (converted from them), the card.

The LiteRT file is the folded ensemble with the scope network's head. Scoring loads that file with
LiteRT alone (xscan.model.inference), heatmaps included; only this conversion and training need TensorFlow.
The graph is the one scoring converted in memory before the file existed, converted the same way,
so the bundled file gives the same numbers as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xscan.input.native_stderr import native_stderr_without
from xscan.model.card import (
    LITERT_FILE,
    WEIGHTS_FILE,
    LiteRTSection,
    ModelCard,
    model_config_from_card,
    sha256_of,
    write_card,
)
from xscan.model.native_notes import CONVERTER_NOTES, import_keras_quietly
from xscan.model.network import CAM, build_model, class_activation_map, ensemble_features, fold_batch_norms
from xscan.model.scorer import MODEL_BATCH, Scorer

# The file's batch is fixed: a score must not depend on how many scans share a call (Scorer.assess).
QUANTIZATIONS = ("none", "dynamic-range")  # "none" ships: docs/model.md has the comparison that decided it


def scoring_model(network: Any, card: ModelCard, scope_network: Any = None) -> tuple[Any, dict[str, int]]:
    """The Keras model scoring runs, batch norms folded, and its outputs' names and widths in order.

    Its outputs: the ensemble's logit; with SCOPE_NETWORK, also the members' pooled features (for
    the feature distance) and the scope network's logits, so one call gives all of them; last the
    class activation map (`network.class_activation_map`, flattened), the one heatmap xscan
    draws, so that neither `explain` nor the review page nor `sr`'s images need TensorFlow.
    """
    keras = import_keras_quietly()

    config = model_config_from_card(card)
    inference = fold_batch_norms(network, config)
    outputs = {"logit": inference.output}
    if scope_network is not None:
        from xscan.model.scope import fold_scope_batch_norms, scope_config_from_card

        folded_scope = fold_scope_batch_norms(scope_network, scope_config_from_card(card), card.image_size)
        outputs["features"] = ensemble_features(inference, config.members).output
        outputs["scope_logits"] = folded_scope(inference.inputs[0])
    outputs[CAM] = keras.layers.Flatten(name="cam_cells")(class_activation_map(inference, config).output)
    widths = {name: int(output.shape[-1]) for name, output in outputs.items()}
    return keras.Model(inference.inputs, list(outputs.values())), widths


def convert(model: Any, batch: int = MODEL_BATCH, quantization: str = "none") -> bytes:
    """MODEL as a LiteRT flatbuffer for batches of BATCH, its outputs flattened side by side into one.

    One output, so that no one has to guess which interpreter output is which; QUANTIZATION
    "dynamic-range" stores the weights as int8 (LiteRT then computes with them in int8 too).
    """
    import_keras_quietly()
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization is one of {', '.join(QUANTIZATIONS)}, not {quantization!r}")
    input_shape = [batch, *model.inputs[0].shape[1:]]

    def joined(inputs: Any) -> Any:
        outputs = model(inputs, training=False)
        outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
        return tf.concat([tf.reshape(output, [batch, -1]) for output in outputs], axis=1)

    function = tf.function(joined, input_signature=[tf.TensorSpec(input_shape, tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], function)
    if quantization == "dynamic-range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with native_stderr_without(CONVERTER_NOTES):
        return converter.convert()


def write_litert(
    weights_dir: Path, card: ModelCard, network: Any, scope_network: Any = None, quantization: str = "none"
) -> LiteRTSection:
    """Convert NETWORK (and SCOPE_NETWORK) to WEIGHTS_DIR/LITERT_FILE; return the card's `litert` section for it."""
    import tensorflow as tf

    model, outputs = scoring_model(network, card, scope_network)
    path = weights_dir / LITERT_FILE
    path.write_bytes(convert(model, MODEL_BATCH, quantization))
    return LiteRTSection(
        file=LITERT_FILE,
        sha256=sha256_of(path),
        batch=MODEL_BATCH,
        outputs=outputs,
        quantization=quantization,
        tensorflow_version=tf.__version__,
    )


def save_bundle(network: Any, card: ModelCard, weights_dir: Path, scope_network: Any = None) -> ModelCard:
    """Write the weights, the LiteRT file scoring runs and their card, with both files' sha256, into WEIGHTS_DIR.

    SCOPE_NETWORK, with a card that has a scope section (its files already written by
    `scope.save_scope`), gives the LiteRT file the scope outputs. The weights are copied into a
    fresh network built from the card's config first: a trained network also carries its
    optimizer's state, which would triple the file and is never needed.
    """
    weights_dir.mkdir(parents=True, exist_ok=True)
    weights_path = weights_dir / WEIGHTS_FILE
    clean = build_model(model_config_from_card(card))
    clean.set_weights(network.get_weights())
    clean.save_weights(weights_path)
    card.weights_sha256 = sha256_of(weights_path)
    card.litert = write_litert(weights_dir, card, clean, scope_network)
    write_card(weights_dir, card)
    return card


def scorer_of(network: Any, card: ModelCard) -> Scorer:
    """A Scorer of a Keras NETWORK in memory (no scope check), converted as `xscan train` does; for tests, tools."""
    model, outputs = scoring_model(network, card)
    card.litert = LiteRTSection(file="", sha256="", batch=MODEL_BATCH, outputs=outputs)
    return Scorer(card, convert(model), keras_network=network)
