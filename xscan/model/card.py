"""The model card and the weights folder it travels in: what the weights are, how they were made, reading and writing both."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xscan.errors import WeightsError
from xscan.model.network import ModelConfig, build_model

WEIGHTS_FILE = "xscan-cnn.weights.h5"  # the Keras weights: training, Grad-CAM and the conversion read them
LITERT_FILE = "xscan-cnn.tflite"  # the network scoring runs, converted from them (xscan.model.bundle)
CARD_FILE = "model-card.json"


@dataclass
class ModelCard:
    """Everything needed to use the weights exactly as they were trained, and what they scored."""

    name: str
    version: str
    config: dict[str, Any]  # ModelConfig's fields: the network is rebuilt from these
    preprocessing: dict[str, Any]
    temperature: float
    threshold: float
    threshold_rule: str
    weights_sha256: str = ""
    bias: float = field(kw_only=True)  # added to logit / temperature before the sigmoid (Platt scaling)
    training: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)  # the report part of validation: it chose nothing
    robustness: list[dict[str, Any]] = field(default_factory=list)
    intended_population: str = ""
    selection: dict[str, Any] = field(
        default_factory=dict
    )  # the part of validation that chose epoch, calibration, threshold
    external: list[dict[str, Any]] = field(default_factory=list)  # labelled sets from outside the population
    scope: dict[str, Any] = field(default_factory=dict)  # the out-of-scope check; empty in older cards
    litert: dict[str, Any] = field(
        default_factory=dict
    )  # the LiteRT file scoring runs (xscan.model.bundle); empty in older cards
    site_guidance: str = ""  # what a new site should expect of these figures, and what to run; empty in older cards
    drift: dict[str, Any] = field(
        default_factory=dict
    )  # the drift check's reference (xscan.training.reference); empty in older cards

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


def calibrated_probability(logits: np.ndarray, temperature: float, bias: float = 0.0) -> np.ndarray:
    """The card's calibration: sigmoid(logit / temperature + bias)."""
    # numpy's own logistic, not scipy's expit (the same numbers): importing scipy.special cost scoring a quarter second of start-up.
    with np.errstate(over="ignore"):  # exp overflows to inf far below zero: the probability is then 0, as expit gives
        return 1.0 / (1.0 + np.exp(-(np.asarray(logits, np.float64) / temperature + bias)))


def model_config_from_card(card: ModelCard) -> ModelConfig:
    """The network's shape as the card records it."""
    return ModelConfig(**{**card.config, "widths": tuple(card.config["widths"])})


def default_weights_dir() -> Path:
    """The bundled weights: `weights/` of the source tree, or the copy installed in the package."""
    package = Path(__file__).parents[1]
    packaged = package / "weights"
    return packaged if (packaged / CARD_FILE).exists() else package.parent / "weights"


def read_card(weights_dir: Path) -> ModelCard:
    card_path = weights_dir / CARD_FILE
    try:
        return ModelCard.from_json(card_path.read_text())
    except OSError as error:
        raise WeightsError(f"cannot read model card {card_path}: {error.strerror or error}") from None
    except (ValueError, TypeError) as error:
        raise WeightsError(f"model card {card_path} is not valid: {error}") from None


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_network(weights_dir: Path, card: ModelCard) -> Any:
    """The Keras network of WEIGHTS_DIR, rebuilt from the card's config with the weights file's weights (checked against the card).

    For training, Grad-CAM and the conversion to LiteRT: this imports TensorFlow, scoring never does.
    """
    from xscan.model.native_notes import import_keras_quietly

    weights_path = checked_file(weights_dir / WEIGHTS_FILE, card.weights_sha256, "weights file")
    import_keras_quietly()
    network = build_model(model_config_from_card(card))
    try:
        network.load_weights(weights_path)
    except Exception as error:  # h5py and keras raise many types for a corrupt or mismatched file
        raise WeightsError(f"cannot load {weights_path}: {error}") from None
    return network


def checked_file(path: Path, sha256: str, what: str) -> Path:
    """PATH, present, readable and (when the card gives one) of the card's SHA256; else a WeightsError naming WHAT it is."""
    if not path.exists():
        raise WeightsError(f"no {what} {path}")
    try:
        actual = sha256_of(path)
    except OSError as error:
        raise WeightsError(f"cannot read {path}: {error.strerror or error}") from None
    if sha256 and actual != sha256:
        raise WeightsError(f"{path} does not match its model card (sha256 {actual[:8]}, card says {sha256[:8]})")
    return path
