"""The model card and the weights folder it travels in: what the weights are, how they were made, reading and writing both."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from xscan.errors import WeightsError
from xscan.model.network import ModelConfig, build_model

WEIGHTS_FILE = "xscan-cnn.weights.h5"
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
    selection: dict[str, Any] = field(default_factory=dict)  # the part of validation that chose epoch, calibration, threshold
    external: list[dict[str, Any]] = field(default_factory=list)  # labelled sets from outside the population
    scope: dict[str, Any] = field(default_factory=dict)  # the out-of-scope check; empty in older cards
    drift: dict[str, Any] = field(default_factory=dict)  # the drift check's reference (xscan.training.reference); empty in older cards

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
    return expit(np.asarray(logits, np.float64) / temperature + bias)


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
