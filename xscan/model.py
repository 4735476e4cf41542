"""The network, its weights on disk, and the model card that travels with them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS_FILE = "xscan-cnn.weights.h5"
CARD_FILE = "model-card.json"
MODEL_NAME = "xscan-cnn"
MODEL_BATCH = 16  # scans per network call when scoring; see Scorer.probabilities


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
    map (the 3-member ensemble ran 45 % faster folded: 2.2 against 4.0 ms an image on one
    thread; logits agree to about 1e-6).
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


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class ModelCard:
    """Everything needed to use the weights exactly as they were trained, and what they scored."""

    name: str
    version: str
    config: dict[str, Any]
    preprocessing: dict[str, Any]
    temperature: float
    threshold: float
    threshold_rule: str
    weights_sha256: str = ""
    bias: float = 0.0  # added to logit / temperature before the sigmoid (Platt scaling); 0 in older cards
    training: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)  # the report part of validation: it chose nothing
    robustness: list[dict[str, Any]] = field(default_factory=list)
    intended_population: str = ""
    selection: dict[str, Any] = field(default_factory=dict)  # the part of validation that chose epoch, calibration, threshold
    external: list[dict[str, Any]] = field(default_factory=list)  # labelled sets from outside the population
    scope: dict[str, Any] = field(default_factory=dict)  # the out-of-scope check; empty in older cards

    @property
    def model_id(self) -> str:
        return f"{self.name}-{self.version}-{self.weights_sha256[:8]}"

    @property
    def image_size(self) -> int:
        return int(self.preprocessing["image_size"])

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        return cls(**json.loads(text))


class WeightsError(Exception):
    """The weights folder is missing, incomplete or does not match its model card."""


def default_weights_dir() -> Path:
    """The bundled weights: `weights/` of the source tree, or the copy installed in the package."""
    packaged = Path(__file__).parent / "weights"
    return packaged if (packaged / CARD_FILE).exists() else Path(__file__).parent.parent / "weights"


def read_card(weights_dir: Path) -> ModelCard:
    card_path = weights_dir / CARD_FILE
    try:
        return ModelCard.from_json(card_path.read_text())
    except OSError as error:
        raise WeightsError(f"cannot read model card {card_path}: {error.strerror or error}") from None
    except (ValueError, TypeError) as error:
        raise WeightsError(f"model card {card_path} is not valid: {error}") from None


@dataclass
class Scorer:
    """A loaded model and its card: turns a batch of preprocessed scans into probabilities."""

    card: ModelCard
    network: Any

    def __post_init__(self) -> None:
        import tensorflow as tf

        # One traced graph of one fixed shape: no retracing, no Python per image.
        inference = fold_batch_norms(self.network, model_config_from_card(self.card))
        self._logits = tf.function(
            lambda batch: inference(batch, training=False),
            input_signature=[tf.TensorSpec([MODEL_BATCH, self.card.image_size, self.card.image_size, 1], tf.float32)],
        )

    def probabilities(self, scans: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of pneumonia for a stack of preprocessed scans.

        The network always runs on chunks of exactly MODEL_BATCH scans (the last one padded):
        the kernels, and so the last bits of a score, could otherwise depend on how many scans
        share a call, and a resumed run must write the same numbers as an uninterrupted one.
        """
        count = len(scans)
        padded = np.zeros((-(-count // MODEL_BATCH) * MODEL_BATCH, *scans.shape[1:]), np.float32)
        padded[:count] = scans
        chunks = [np.asarray(self._logits(padded[i : i + MODEL_BATCH])) for i in range(0, len(padded), MODEL_BATCH)]
        logits = np.concatenate(chunks).reshape(-1)[:count].astype(np.float64)
        return calibrated_probability(logits, self.card.temperature, self.card.bias)


def calibrated_probability(logits: np.ndarray, temperature: float, bias: float = 0.0) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(logits / temperature + bias)))


def load_scorer(weights_dir: Path | None = None, threads: int = 1) -> Scorer:
    """Load weights and card from WEIGHTS_DIR (default: the bundled model), offline.

    THREADS is how many threads TensorFlow runs each batch on. One, because the scoring
    pipeline's decoding workers keep every core busy: more model threads only spin-wait and
    take turns with the decoders.
    """
    weights_dir = Path(weights_dir) if weights_dir else default_weights_dir()
    card = read_card(weights_dir)
    weights_path = weights_dir / WEIGHTS_FILE
    if not weights_path.exists():
        raise WeightsError(f"no weights file {weights_path}")
    actual = sha256_of(weights_path)
    if card.weights_sha256 and actual != card.weights_sha256:
        raise WeightsError(f"{weights_path} does not match its model card (sha256 {actual[:8]}, card says {card.weights_sha256[:8]})")
    _set_tensorflow_threads(threads)
    # The card's config rebuilds the network exactly as trained; the file holds only its weights.
    network = build_model(model_config_from_card(card))
    try:
        network.load_weights(weights_path)
    except Exception as error:  # h5py and keras raise many types for a corrupt or mismatched file
        raise WeightsError(f"cannot load {weights_path}: {error}") from None
    return Scorer(card, network)


def model_config_from_card(card: ModelCard) -> ModelConfig:
    config = dict(card.config)
    config["widths"] = tuple(config["widths"])
    config.setdefault("members", 1)  # cards written before ensembles describe one network
    return ModelConfig(**config)


def _set_tensorflow_threads(threads: int) -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TensorFlow already ran in this process (a second model, or tests): its threads stay as they are


def save_bundle(network: Any, card: ModelCard, weights_dir: Path) -> ModelCard:
    """Write the weights and their card, with the weights' sha256, into WEIGHTS_DIR.

    The weights are copied into a fresh network built from the card's config first: a trained
    network also carries its optimizer's state, which would triple the file and is never needed.
    """
    weights_dir.mkdir(parents=True, exist_ok=True)
    weights_path = weights_dir / WEIGHTS_FILE
    clean = build_model(model_config_from_card(card))
    clean.set_weights(network.get_weights())
    clean.save_weights(weights_path)
    card.weights_sha256 = sha256_of(weights_path)
    (weights_dir / CARD_FILE).write_text(card.to_json())
    return card
