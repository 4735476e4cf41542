"""The LiteRT file computes what the Keras model computes, and native start-up notes never reach the user."""

from __future__ import annotations

import os

import numpy as np

from xscan.input.native_stderr import native_stderr_without
from xscan.model.bundle import convert
from xscan.model.inference import CompiledNetwork
from xscan.model.native_notes import TENSORFLOW_NOTES, XNNPACK_NOTE
from xscan.model.network import ModelConfig, build_model, ensemble_features, fold_batch_norms


def test_the_converted_network_gives_the_keras_models_outputs_in_order(capfd):
    import keras

    config = ModelConfig(image_size=32, widths=(4, 8), members=2)
    folded = fold_batch_norms(build_model(config), config)
    model = keras.Model(folded.inputs, [folded.output, ensemble_features(folded, config.members).output])
    batch = np.random.default_rng(1).random((4, 32, 32, 1), dtype=np.float32)
    compiled = CompiledNetwork(convert(model, batch=4), {"logit": 1, "features": 16})
    expected = [np.asarray(output) for output in model(batch, training=False)]
    got = compiled.run(batch)
    assert compiled.batch == 4 and compiled.outputs == ["logit", "features"]
    assert [output.shape for output in got.values()] == [(4, 1), (4, 16)]
    for mine, theirs in zip(got.values(), expected, strict=True):
        assert np.allclose(mine, theirs, rtol=1e-5, atol=1e-5)
    assert np.abs(expected[1]).max() > 1e-3  # a real signal went through
    assert XNNPACK_NOTE not in capfd.readouterr().err


def test_native_notes_are_dropped_and_everything_else_passed_on(capfd):
    with native_stderr_without([XNNPACK_NOTE]):
        os.write(2, f"{XNNPACK_NOTE}\nE0000 something went wrong\n".encode())
    assert capfd.readouterr().err == "E0000 something went wrong\n"


def test_tensorflows_start_up_notices_are_dropped_and_its_errors_kept(capfd):
    # As TensorFlow 2.21 prints them on the 2-core machine's CPU (issue 25), and an error of its own.
    printed = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796453189.332866    5209 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
        "available CPU instructions in performance-critical operations.\n"
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate "
        "compiler flags.\n"
        "I0000 00:00:1733000000.000000    5209 port.cc:153] oneDNN custom operations are on. "
        "You may see slightly different numerical results due to floating-point round-off errors from different "
        "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n"
        "E0000 00:00:1733000000.000000    5209 cuda_dnn.cc:8310] Unable to register cuDNN factory\n"
    )
    with native_stderr_without(TENSORFLOW_NOTES):
        os.write(2, printed.encode())
    assert capfd.readouterr().err == printed.splitlines(keepends=True)[-1]


def test_a_file_whose_output_does_not_match_the_card_is_refused():
    import keras
    import pytest

    config = ModelConfig(image_size=32, widths=(4,), members=1)
    folded = fold_batch_norms(build_model(config), config)
    flatbuffer = convert(keras.Model(folded.inputs, [folded.output]), batch=2)
    with pytest.raises(ValueError, match="card says 5"):
        CompiledNetwork(flatbuffer, {"logit": 1, "scope_logits": 4})
