"""The reference the heatmap is checked against: Grad-CAM through TensorFlow's gradient tape; the randomisation check.

xscan draws the class activation map the LiteRT file outputs (xscan.explain.cam); for this
network it equals Grad-CAM at the last stage, which the tests show with this module's maps,
computed on the Keras network (batch norms unfolded). Only tests and benchmarks import it: it
needs TensorFlow. docs/explain.md says why Grad-CAM and what the maps can and cannot show.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xscan.explain.cam import grid_from_convs
from xscan.explain.overlay import Grid
from xscan.model.network import ModelConfig, build_model, last_stage_layer, member_logit_layer
from xscan.model.scorer import MODEL_BATCH

__all__ = ["GradCam", "grid_of", "last_stage_layer", "randomized_copy"]


def grid_of(network: Any, config: ModelConfig) -> Grid:
    """Where the last stage's cells sit on the input, from member 0's Keras convolutions (all members share the shape).

    The same geometry `cam_grid` derives from the card, read from the layers instead: the tests
    compare the two.
    """
    import keras

    convs = [
        layer for layer in network.layers if isinstance(layer, keras.layers.Conv2D) and layer.name.startswith("m0_")
    ]
    if any(conv.padding != "same" for conv in convs):
        raise ValueError("the grid is derived for 'same'-padded convolutions only")
    return grid_from_convs(config.image_size, [(conv.kernel_size[0], conv.strides[0]) for conv in convs])


class GradCam:
    """Grad-CAM (Selvaraju et al. 2017) of the ensemble's logit on every member's last conv stage.

    The ensemble's logit is the mean of the members' logits; its gradient reaches each member's
    feature maps already divided by the member count, so the members' maps are summed, which is
    the mean of each member's own Grad-CAM: combined the way the logits are. Behind each map
    there is only global average pooling and one dense layer, so a cell's value is exactly its
    share of the logit: the cells add up to the ensemble's logit less the mean dense bias.
    """

    def __init__(self, network: Any, config: ModelConfig) -> None:
        """Build the probe that returns every member's last-stage features and the ensemble's output.

        Args:
            network: The Keras ensemble.
            config: Its shape, naming each member's last conv stage.
        """
        import keras
        import tensorflow as tf

        features = [network.get_layer(last_stage_layer(config, member)).output for member in range(config.members)]
        probe = keras.Model(network.inputs, [*features, network.output])

        def maps(batch: Any) -> Any:
            with tf.GradientTape() as tape:
                *activations, logit = probe(batch, training=False)
                total = tf.reduce_sum(logit)  # scans do not interact at inference: each gets its own gradient
            gradients = tape.gradient(total, activations)
            return tf.add_n(
                [
                    tf.reduce_sum(tf.reduce_mean(gradient, axis=(1, 2), keepdims=True) * activation, axis=-1)
                    for gradient, activation in zip(gradients, activations, strict=True)
                ]
            )

        side = config.image_size
        self._maps = tf.function(maps, input_signature=[tf.TensorSpec([MODEL_BATCH, side, side, 1], tf.float32)])
        self.grid = grid_of(network, config)
        self.image_size = side

    def cells(self, scans: np.ndarray) -> np.ndarray:
        """Signed maps, shape (scans, cells, cells), in logit units: > 0 where the cell raised the pneumonia score."""
        count = len(scans)
        padded = np.zeros((-(-count // MODEL_BATCH) * MODEL_BATCH, *scans.shape[1:]), np.float32)
        padded[:count] = scans
        chunks = [np.asarray(self._maps(padded[i : i + MODEL_BATCH])) for i in range(0, len(padded), MODEL_BATCH)]
        return np.concatenate(chunks)[:count]


def randomized_copy(network: Any, config: ModelConfig, stages: int = 1, seed: int = 0) -> Any:
    """Copy a network with every member's last conv stages and logit layer re-initialised, the rest as trained.

    The model-randomisation test of Adebayo et al. (2018): maps that stay the same when the
    weights they explain are random show the input, not the model. Kernels get Keras's default
    Glorot-uniform draw (from the seed, so the check repeats), biases zero, batch norms the identity.

    Args:
        network: The Keras ensemble.
        config: Its shape, naming each member's stages.
        stages: How many of the last conv stages to re-initialise.
        seed: The seed of the kernels' draw.

    Returns:
        The randomised copy.
    """
    copy = build_model(config)
    copy.set_weights(network.get_weights())
    last = len(config.widths)
    prefixes = tuple(f"m{member}_s{stage}_" for member in range(config.members) for stage in range(last - stages, last))
    logits = tuple(member_logit_layer(member) for member in range(config.members))
    rng = np.random.default_rng(seed)
    for layer in copy.layers:
        if layer.name.startswith(prefixes) or layer.name in logits:
            layer.set_weights([_initial(weight.name, tuple(weight.shape), rng) for weight in layer.weights])
    return copy


def _initial(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if name == "kernel":
        receptive = int(np.prod(shape[:-2]))
        limit = np.sqrt(6.0 / (receptive * (shape[-2] + shape[-1])))
        return rng.uniform(-limit, limit, shape).astype(np.float32)
    return (np.ones if name in ("gamma", "moving_variance") else np.zeros)(shape, np.float32)
