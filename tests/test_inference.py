"""The compiled network (LiteRT) computes what the Keras model computes, and its start-up note never reaches the user."""

from __future__ import annotations

import os

import numpy as np

from xscan.model.inference import XNNPACK_NOTE, CompiledNetwork, native_stderr_without
from xscan.model.network import ModelConfig, build_model, ensemble_features, fold_batch_norms


def test_the_compiled_network_gives_the_keras_models_outputs_in_order(capfd):
    import keras

    config = ModelConfig(image_size=32, widths=(4, 8), members=2)
    folded = fold_batch_norms(build_model(config), config)
    model = keras.Model(folded.inputs, [folded.output, ensemble_features(folded, config.members).output])
    batch = np.random.default_rng(1).random((4, 32, 32, 1), dtype=np.float32)
    compiled = CompiledNetwork(model, batch=4)
    expected = [np.asarray(output) for output in model(batch, training=False)]
    got = compiled.run(batch)
    assert [output.shape for output in got] == [(4, 1), (4, 16)]
    for mine, theirs in zip(got, expected, strict=True):
        assert np.allclose(mine, theirs, rtol=1e-5, atol=1e-5)
    assert np.abs(expected[1]).max() > 1e-3  # a real signal went through
    assert XNNPACK_NOTE not in capfd.readouterr().err


def test_native_notes_are_dropped_and_everything_else_passed_on(capfd):
    with native_stderr_without([XNNPACK_NOTE]):
        os.write(2, f"{XNNPACK_NOTE}\nE0000 something went wrong\n".encode())
    assert capfd.readouterr().err == "E0000 something went wrong\n"
