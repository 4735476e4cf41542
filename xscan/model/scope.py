"""The out-of-scope check: is a scan the kind of film the model was built for (a frontal pediatric chest radiograph)?

Two cheap signals, both computed on what one scoring call already produces:

- a small scope network (one more head on the same model input) that tells in-scope scans from three
  kinds of out-of-scope input it was trained on: films of another population (adult films of
  another hospital), rotated or inverted renderings of chest films, and things that are not a
  chest radiograph at all (noise, blank and gradient images, small crops, drawings and text);
- the Mahalanobis distance of the ensemble's pooled features from the training scans' features,
  which flags inputs unlike anything seen in training, including kinds the scope network never saw.

A scan is out of scope when the scope network's in-scope probability falls below its threshold or
the distance exceeds its threshold. Both thresholds are chosen on validation scans that are
in scope, so that about 0.5 % of ordinary films are flagged; they are stored in the model card.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xscan.errors import XscanError
from xscan.model.card import ModelCard, ScopeSection, sha256_of

# The scope network's classes, by index. The reason strings are written into the `scope` column.
IN_SCOPE = 0
SCOPE_REASONS = ("", "outside the training population", "rotated or inverted", "not a chest radiograph")
UNUSUAL_FEATURES = "not a chest radiograph"  # the reason given when only the feature distance flags a scan
SCOPE_WEIGHTS_FILE = "xscan-scope.weights.h5"
FEATURE_STATS_FILE = "xscan-features.npz"


@dataclass(frozen=True)
class ScopeConfig:
    """The scope network and how it is trained; every value is recorded in the model card."""

    widths: tuple[int, ...] = (8, 16, 32, 64)  # stride-2 conv stages on the half-resolution input
    epochs: int = 16
    batch_size: int = 64
    learning_rate: float = 2e-3
    synthetic_per_kind: int = 1500  # generated rotated/inverted and not-a-radiograph examples each
    external_report_fraction: float = 0.4  # share of the out-of-population patients kept for reporting only
    target_in_scope_rate: float = 0.995  # each threshold keeps this share of in-scope selection scans
    # A not-a-radiograph crop's side, as a share of the film's: too little of a film to be a chest film.
    crop_side: tuple[float, float] = (0.12, 0.3)


def build_scope_model(config: ScopeConfig, image_size: int, batch_norm: bool = True) -> Any:
    """Build a small CNN on the model input, downsampled 2x inside the network, with four class logits.

    Args:
        config: The scope network's recipe.
        image_size: The model input's side in pixels.
        batch_norm: Give each conv a batch norm; off, the convs carry a bias instead: the inference
            form `fold_scope_batch_norms` fills.

    Returns:
        The Keras network.
    """
    import keras
    from keras import layers

    inputs = keras.Input((image_size, image_size, 1), name="scan")
    x = layers.AveragePooling2D(2, name="scope_downsample")(inputs)
    for stage, width in enumerate(config.widths):
        x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=not batch_norm, name=f"scope_s{stage}_conv")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"scope_s{stage}_bn")(x)
        x = layers.ReLU(name=f"scope_s{stage}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="scope_pool")(x)
    outputs = layers.Dense(len(SCOPE_REASONS), name="scope_logits")(x)
    return keras.Model(inputs, outputs, name="xscan-scope")


def fold_scope_batch_norms(network: Any, config: ScopeConfig, image_size: int) -> Any:
    """Give the scope network for inference: each batch norm folded into the conv before it.

    As `model.fold_batch_norms` does for the classifier.

    Args:
        network: The trained scope network, with batch norms.
        config: Its recipe.
        image_size: The model input's side in pixels.

    Returns:
        The folded network.
    """
    from xscan.model.network import fill_folded

    folded = build_scope_model(config, image_size, batch_norm=False)
    fill_folded(folded, network)
    return folded


# --- synthetic out-of-scope examples --------------------------------------------------------------


# --- the fitted check -----------------------------------------------------------------------------


@dataclass
class FeatureStats:
    """Mean and precision matrix of the ensemble's pooled features on the training scans (Ledoit-Wolf)."""

    mean: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> FeatureStats:
        """Fit the statistics to the training scans' features, one row per scan."""
        from sklearn.covariance import LedoitWolf

        fitted = LedoitWolf().fit(np.asarray(features, np.float64))
        return cls(fitted.location_.astype(np.float32), fitted.precision_.astype(np.float32))

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Give the Mahalanobis distance of each row of features, one row per scan."""
        # In float64: in float32 the last digits moved with a scan's place in the batch, and the distance is
        # written to the results (feature_distance), which a resumed run must write as an uninterrupted one does.
        centred = np.asarray(features, np.float64) - self.mean
        # One matrix product (BLAS), then a row-wise dot: a three-operand einsum here ran as a slow loop.
        return np.sqrt(np.maximum(((centred @ self.precision.astype(np.float64)) * centred).sum(axis=1), 0.0))

    def save(self, path: Path) -> None:
        """Write the statistics as a numpy .npz file."""
        np.savez(path, mean=self.mean, precision=self.precision)

    @classmethod
    def load(cls, path: Path) -> FeatureStats:
        """Read the statistics that `save` wrote."""
        with np.load(path) as stored:
            return cls(stored["mean"], stored["precision"])


@dataclass(frozen=True)
class ScopeVerdict:
    """The check's verdict on one scan."""

    reason: str  # empty when in scope
    score: float  # the scope network's out-of-scope probability (1 - in-scope)
    distance: float  # feature distance from the training scans


@dataclass
class ScopeCheck:
    """The fitted check: thresholds from the card, the feature statistics from beside the weights."""

    in_scope_threshold: float  # a scan whose in-scope probability is below this is out of scope
    distance_threshold: float  # or whose feature distance exceeds this
    stats: FeatureStats

    def describe(self, scope_logits: np.ndarray, features: np.ndarray) -> list[str]:
        """The `scope` cell of each scan: empty in scope, else the reason with the check's score."""
        return [self.cell(verdict) for verdict in self.judge(scope_logits, features)]

    def cell(self, verdict: ScopeVerdict) -> str:
        """The `scope` cell of one verdict."""
        if not verdict.reason:
            return ""
        if verdict.score > 1 - self.in_scope_threshold:  # the scope network flagged it
            return f"{verdict.reason} (score {verdict.score:.3f})"
        return f"{verdict.reason} (distance {verdict.distance:.1f} > {self.distance_threshold:.1f})"

    def judge(self, scope_logits: np.ndarray, features: np.ndarray) -> list[ScopeVerdict]:
        """Judge each scan of a batch.

        Args:
            scope_logits: The scope network's logits, one row per scan.
            features: The ensemble's pooled features, one row per scan.

        Returns:
            Each scan's verdict: why it is out of scope (empty when in scope), its score and distance.
        """
        probabilities = softmax(scope_logits)
        distances = self.stats.distance(features)
        flagged = self.flags(scope_logits, features, distances)
        verdicts = []
        for probability, distance, out in zip(probabilities, distances, flagged, strict=True):
            in_scope = float(probability[IN_SCOPE])
            if not out:
                reason = ""
            elif in_scope < self.in_scope_threshold:
                reason = SCOPE_REASONS[1 + int(np.argmax(probability[1:]))]
            else:
                reason = UNUSUAL_FEATURES
            verdicts.append(ScopeVerdict(reason, 1.0 - in_scope, float(distance)))
        return verdicts

    def flags(self, scope_logits: np.ndarray, features: np.ndarray, distances: np.ndarray | None = None) -> np.ndarray:
        """Mask of the scans out of scope: in-scope probability below its threshold; or distance above its own."""
        distances = self.stats.distance(features) if distances is None else distances
        return (softmax(scope_logits)[:, IN_SCOPE] < self.in_scope_threshold) | (distances > self.distance_threshold)


def save_scope(
    weights_dir: Path, network: Any, stats: FeatureStats, config: ScopeConfig, image_size: int
) -> dict[str, str]:
    """Write the scope network's weights (without optimizer state) and the feature statistics.

    Args:
        weights_dir: The weights folder.
        network: The trained scope network.
        stats: The feature statistics.
        config: The network's recipe.
        image_size: The model input's side in pixels.

    Returns:
        Their SHA-256s, as the card's scope section names them.
    """
    weights_dir.mkdir(parents=True, exist_ok=True)
    clean = build_scope_model(config, image_size)
    clean.set_weights(network.get_weights())
    clean.save_weights(weights_dir / SCOPE_WEIGHTS_FILE)
    stats.save(weights_dir / FEATURE_STATS_FILE)
    return {
        f"{name}_sha256": sha256_of(weights_dir / file)
        for name, file in (("weights", SCOPE_WEIGHTS_FILE), ("features", FEATURE_STATS_FILE))
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    """The softmax of each row of logits, in float64."""
    shifted = np.asarray(logits, np.float64) - np.max(logits, axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class ScopeFilesError(XscanError):
    """The scope check's files are missing or do not match the model card."""


def scope_config_from_card(card: ModelCard) -> ScopeConfig:
    """Give the scope network's recipe as the card records it.

    Args:
        card: The model card.

    Returns:
        The recipe, typed.

    Raises:
        ScopeFilesError: The card records no training recipe.
    """
    if card.training is None:
        raise ScopeFilesError("the model card records no training recipe, so no scope network")
    recipe = card.training.recipe["scope"]  # the recipe is recorded whole, as a dict; here it becomes typed again
    return ScopeConfig(**{**recipe, "widths": tuple(recipe["widths"]), "crop_side": tuple(recipe["crop_side"])})


def scope_files(
    weights_dir: Path, card_scope: ScopeSection, names: tuple[str, ...] = ("weights", "features")
) -> dict[str, Path]:
    """Find the files of a card's scope section in a weights folder, each present and matching the card.

    Args:
        weights_dir: The weights folder.
        card_scope: The card's scope section.
        names: Which files: "weights" is the scope network's Keras weights (training, and the
            conversion to LiteRT), "features" the feature statistics (scoring).

    Returns:
        Each file's path by name.

    Raises:
        ScopeFilesError: A file is missing or does not match the card.
    """
    files = {
        "weights": (card_scope.weights_file, card_scope.weights_sha256),
        "features": (card_scope.features_file, card_scope.features_sha256),
    }
    paths = {name: weights_dir / files[name][0] for name in names}
    for name, path in paths.items():
        if not path.exists():
            raise ScopeFilesError(f"no {path} (the model card's out-of-scope check needs it)")
        if sha256_of(path) != files[name][1]:
            raise ScopeFilesError(f"{path} does not match its model card")
    return paths


def load_scope_check(weights_dir: Path, card: ModelCard) -> ScopeCheck:
    """Load the fitted check of a card's scope section: its thresholds, the feature statistics (numpy).

    Args:
        weights_dir: The weights folder.
        card: Its model card.

    Returns:
        The check.

    Raises:
        ScopeFilesError: The card has no scope check, or its files are missing or do not match it.
    """
    card_scope = card.scope
    if card_scope is None:
        raise ScopeFilesError("the model card has no out-of-scope check")
    features = scope_files(weights_dir, card_scope, ("features",))["features"]
    return ScopeCheck(card_scope.in_scope_threshold, card_scope.distance_threshold, FeatureStats.load(features))


def load_scope_network(weights_dir: Path, card: ModelCard) -> Any:
    """Load the scope network of a card with its Keras weights (for training, the conversion to LiteRT).

    Args:
        weights_dir: The weights folder.
        card: Its model card.

    Returns:
        The Keras network.

    Raises:
        ScopeFilesError: The card has no scope check, or its weights are missing or do not match it.
    """
    if card.scope is None:
        raise ScopeFilesError("the model card has no out-of-scope check")
    path = scope_files(weights_dir, card.scope, ("weights",))["weights"]
    network = build_scope_model(scope_config_from_card(card), card.image_size)
    network.load_weights(path)
    return network
