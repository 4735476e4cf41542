"""The network: its shape, how it is built from that shape, and the folded form that scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MODEL_NAME = "xscan-cnn"


@dataclass(frozen=True)
class ModelConfig:
    """The network's shape; every value is recorded in the model card."""

    image_size: int = 160  # square input side, pixels
    widths: tuple[int, ...] = (8, 16, 32, 64, 128)  # one stride-2 stage per width
    extra_convs_from_stage: int = 2  # stages from this index on get a second, stride-1 conv
    dropout: float = 0.3  # before the final dense layer
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    members: int = 3  # independently initialised networks of this shape; their logits are averaged


def build_model(config: ModelConfig, batch_norm: bool = True) -> Any:
    """All-convolutional CNNs (stride-2 conv stages, global average pooling, one logit each) on one input.

    With several members the output is the mean of their logits: one call scores the ensemble.
    Each member's own logit is the layer `member_logit_layer(i)`; `member_logits` exposes them for
    training, where every member has its own loss, so members learn independently, as in a deep
    ensemble, not as one wide network. Without BATCH_NORM the convs carry a bias instead: the
    shape `fold_batch_norms` fills for inference.
    """
    import keras
    from keras import layers

    inputs = keras.Input((config.image_size, config.image_size, 1), name="scan")
    logits = [_member(layers, inputs, config, member, batch_norm) for member in range(config.members)]
    logit = logits[0] if config.members == 1 else layers.Average(name="logit")(logits)
    return keras.Model(inputs, logit, name=MODEL_NAME)


def member_logit_layer(member: int) -> str:
    """The name of a member's own logit layer (in a single network, the output layer itself)."""
    return f"logit_m{member}"


def member_features_layer(member: int) -> str:
    """The name of a member's pooled features (the input of its logit), read by the out-of-scope check."""
    return f"m{member}_features"


def ensemble_features(network: Any, members: int) -> Any:
    """A model sharing NETWORK's layers whose output is every member's pooled features, side by side."""
    import keras
    from keras import layers

    outputs = [network.get_layer(member_features_layer(i)).output for i in range(members)]
    return keras.Model(network.inputs, outputs[0] if members == 1 else layers.Concatenate(name="features")(outputs))


def member_logits(network: Any, members: int) -> Any:
    """A model sharing NETWORK's layers whose output is every member's logit, shape (batch, members)."""
    import keras
    from keras import layers

    if members == 1:
        return network
    outputs = [network.get_layer(member_logit_layer(i)).output for i in range(members)]
    return keras.Model(network.inputs, layers.Concatenate(name="member_logits")(outputs))


def _member(layers: Any, inputs: Any, config: ModelConfig, member: int, batch_norm: bool) -> Any:
    x = inputs
    for stage, width in enumerate(config.widths):
        x = _conv_bn_relu(layers, x, width, 2, f"m{member}_s{stage}_a", batch_norm)
        if stage >= config.extra_convs_from_stage:
            x = _conv_bn_relu(layers, x, width, 1, f"m{member}_s{stage}_b", batch_norm)
    x = layers.GlobalAveragePooling2D(name=member_features_layer(member))(x)
    x = layers.Dropout(config.dropout)(x)
    return layers.Dense(1, name=member_logit_layer(member))(x)


def _conv_bn_relu(layers: Any, x: Any, width: int, strides: int, name: str, batch_norm: bool) -> Any:
    # The names pair each conv with its batch norm for fold_batch_norms; the weights file does not
    # depend on them (Keras stores a model's layers by class and position).
    x = layers.Conv2D(width, 3, strides=strides, padding="same", use_bias=not batch_norm, name=f"{name}_conv")(x)
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def fold_batch_norms(network: Any, config: ModelConfig) -> Any:
    """The same function for inference, with each batch norm folded into the conv before it.

    At inference a batch norm is a fixed per-channel scale and shift; merged into the conv's
    kernel and bias it costs nothing, where on its own it is one more pass over every feature
    map (docs/throughput.md has the timings).
    """
    import keras

    folded = build_model(config, batch_norm=False)
    for layer in folded.layers:
        if isinstance(layer, keras.layers.Conv2D):
            conv = network.get_layer(layer.name)
            norm = network.get_layer(layer.name.removesuffix("_conv") + "_bn")
            gamma, beta, mean, variance = (np.asarray(v) for v in (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance))
            scale = gamma / np.sqrt(variance + norm.epsilon)
            layer.set_weights([np.asarray(conv.kernel) * scale, beta - mean * scale])
        elif layer.weights:
            layer.set_weights(network.get_layer(layer.name).get_weights())
    return folded
