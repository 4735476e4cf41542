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


STEM_CONV = "stem_conv"  # the inference form's one first conv, every member's first conv side by side


def build_model(config: ModelConfig, batch_norm: bool = True, shared_stem: bool = False) -> Any:
    """All-convolutional CNNs (stride-2 conv stages, global average pooling, one logit each) on one input.

    With several members the output is the mean of their logits: one call scores the ensemble.
    Each member's own logit is the layer `member_logit_layer(i)`; `member_logits` exposes them for
    training, where every member has its own loss, so members learn independently, as in a deep
    ensemble, not as one wide network. Without BATCH_NORM the convs carry a bias instead: the
    shape `fold_batch_norms` fills for inference. With SHARED_STEM (inference only) the members'
    first convs are one conv (STEM_CONV) whose output channels each member takes its share of.
    """
    import keras
    from keras import layers

    inputs = keras.Input((config.image_size, config.image_size, 1), name="scan")
    stems: list[Any] = [None] * config.members
    if shared_stem:
        if batch_norm:
            raise ValueError("a shared stem is the inference form: build it without batch norms")
        width = config.widths[0]
        stem = _conv_bn_relu(
            layers, inputs, config.members * width, 2, STEM_CONV.removesuffix("_conv"), batch_norm=False
        )
        stems = [stem[..., member * width : (member + 1) * width] for member in range(config.members)]
    logits = [_member(layers, inputs, config, member, batch_norm, stems[member]) for member in range(config.members)]
    logit = logits[0] if config.members == 1 else layers.Average(name="logit")(logits)
    return keras.Model(inputs, logit, name=MODEL_NAME)


def member_logit_layer(member: int) -> str:
    """The name of a member's own logit layer (in a single network, the output layer itself)."""
    return f"logit_m{member}"


def member_features_layer(member: int) -> str:
    """The name of a member's pooled features (the input of its logit), read by the out-of-scope check."""
    return f"m{member}_features"


def last_stage_layer(config: ModelConfig, member: int) -> str:
    """The name of MEMBER's last convolutional feature map (after its ReLU): the layer the heatmap explains."""
    stage = len(config.widths) - 1
    conv = "b" if stage >= config.extra_convs_from_stage else "a"
    return f"m{member}_s{stage}_{conv}_relu"


def member_convs(config: ModelConfig) -> list[tuple[int, int]]:
    """Each member's convolutions in order as (kernel, stride), all "same"-padded: the geometry of its feature maps."""
    convs = []
    for stage in range(len(config.widths)):
        convs.append((3, 2))
        if stage >= config.extra_convs_from_stage:
            convs.append((3, 1))
    return convs


CAM = "cam"  # the scoring network's output of the ensemble's class activation map


def class_activation_map(network: Any, config: ModelConfig) -> Any:
    """A model sharing NETWORK's layers whose output is the ensemble's class activation map, (batch, cells, cells).

    Behind each member's last conv stage there is only global average pooling and one dense
    logit, so its Grad-CAM there is the class activation map of Zhou et al. (2016): the stage's
    feature maps weighted by the logit's weights. Each member's map is divided by the member
    count and the cell count, so a cell's value is its share of the ensemble's logit (the cells
    add up to the logit less the mean dense bias), the members' maps summed as their logits are
    averaged. The weighting is a 1 x 1 convolution holding the dense weights: a few thousand
    multiplications a scan, beside the network's millions.
    """
    import keras
    from keras import layers

    maps = []
    for member in range(config.members):
        # What the member pools: its last stage's feature maps, however the stages were built (a shared stem too).
        features = network.get_layer(member_features_layer(member)).input
        cells = int(features.shape[1]) * int(features.shape[2])
        weigh = layers.Conv2D(1, 1, use_bias=False, name=f"m{member}_{CAM}")
        maps.append(weigh(features))
        kernel = np.asarray(network.get_layer(member_logit_layer(member)).kernel)
        weigh.set_weights([(kernel / (config.members * cells)).reshape(1, 1, -1, 1).astype(np.float32)])
    total = maps[0] if len(maps) == 1 else layers.Add(name=f"{CAM}_sum")(maps)
    side = int(total.shape[1])
    return keras.Model(network.inputs, layers.Reshape((side, side), name=CAM)(total))


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


def _member(layers: Any, inputs: Any, config: ModelConfig, member: int, batch_norm: bool, stem: Any = None) -> Any:
    """One member's stages on INPUTS; given STEM (its first conv's output, from a shared one), from the second on."""
    x = inputs
    for stage, width in enumerate(config.widths):
        if stage == 0 and stem is not None:
            x = stem
        else:
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
    """The same function for inference, with each batch norm folded into the conv before it, and one shared first conv.

    At inference a batch norm is a fixed per-channel scale and shift; merged into the conv's
    kernel and bias it costs nothing, where on its own it is one more pass over every feature
    map (docs/throughput.md has the timings). The members' first convs all read the one-channel
    scan at full size, the costliest step of each member: side by side in one conv the scan is
    read once (about a quarter of the network's time saved with three members; the numbers are
    the same, each output channel being computed as before).
    """
    folded = build_model(config, batch_norm=False, shared_stem=config.members > 1)
    fill_folded(folded, network, skip=(STEM_CONV,))
    if config.members > 1:
        parts = [folded_conv(network, f"m{member}_s0_a_conv") for member in range(config.members)]
        folded.get_layer(STEM_CONV).set_weights(
            [np.concatenate([kernel for kernel, _ in parts], axis=-1), np.concatenate([bias for _, bias in parts])]
        )
    return folded


def fill_folded(folded: Any, network: Any, skip: tuple[str, ...] = ()) -> None:
    """Give FOLDED (NETWORK's shape, convs with a bias for a batch norm) NETWORK's weights, each batch norm folded in.

    Layers named in SKIP are left for the caller to fill.
    """
    import keras

    for layer in folded.layers:
        if layer.name in skip:
            continue
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights(list(folded_conv(network, layer.name)))
        elif layer.weights:
            layer.set_weights(network.get_layer(layer.name).get_weights())


def folded_conv(network: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias of NETWORK's conv NAME, the batch norm after it (its name ending `_bn` for `_conv`) folded in."""
    conv = network.get_layer(name)
    norm = network.get_layer(name.removesuffix("_conv") + "_bn")
    gamma, beta, mean, variance = (
        np.asarray(v) for v in (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance)
    )
    scale = gamma / np.sqrt(variance + norm.epsilon)
    return np.asarray(conv.kernel) * scale, beta - mean * scale
