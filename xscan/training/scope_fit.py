"""Fitting the out-of-scope check for a trained classifier: its scope network, feature statistics, thresholds, rates."""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from xscan.model.card import ExternalFigures, ScopeSection
from xscan.model.network import ensemble_features
from xscan.model.scope import (
    FEATURE_STATS_FILE,
    IN_SCOPE,
    SCOPE_REASONS,
    SCOPE_WEIGHTS_FILE,
    FeatureStats,
    ScopeCheck,
    build_scope_model,
    save_scope,
    softmax,
)
from xscan.training.augment import build_augmenter
from xscan.training.config import Log, TrainConfig
from xscan.training.dataset import LabelledScan, find_labelled_scans, split_by_patient
from xscan.training.fit import logits, predict
from xscan.training.operating_point import OperatingPoint, figures
from xscan.training.parts import TrainingParts, labels_of, load_images, preprocess_all
from xscan.training.scope_examples import synthetic_out_of_scope

METHOD = (
    "a small scope network (4 classes: in scope, another population, rotated or inverted, not a chest radiograph) "
    "on the model input, and the Mahalanobis distance of the ensemble's pooled features from the training "
    "scans' (Ledoit-Wolf covariance); out of scope when either passes its threshold"
)


@dataclass
class FittedScope:
    """A fitted check: the scope network, the feature statistics, the card's scope section and external figures."""

    network: Any
    stats: FeatureStats
    section: ScopeSection
    external: list[ExternalFigures]

    def save(self, weights_dir: Path, config: TrainConfig) -> ScopeSection:
        """Write the network's weights and the statistics into WEIGHTS_DIR; return the section with their sha256s.

        Args:
            weights_dir: the weights folder.
            config: the recipe (the scope network's shape and the input size).

        Returns:
            The card's scope section, naming the files written.
        """
        hashes = save_scope(weights_dir, self.network, self.stats, config.scope, config.model.image_size)
        self.section = replace(self.section, **hashes)
        return self.section


def fit_scope_check(
    network: Any,
    parts: TrainingParts,
    external: Path | None,
    operating_point: OperatingPoint,
    config: TrainConfig,
    log: Log,
) -> FittedScope:
    """Fit the out-of-scope check for NETWORK on the training PARTS (and part of EXTERNAL's patients).

    Args:
        network: the trained ensemble.
        parts: the three parts, decoded and preprocessed.
        external: a labelled folder from outside the intended population, or None.
        operating_point: the classifier's calibration and threshold (for the external figures).
        config: the recipe.
        log: where progress lines go.

    Returns:
        The fitted check (not yet saved).
    """
    external_scans = find_labelled_scans(external) if external else []
    external_fit, external_report = (
        split_by_patient(external_scans, config.scope.external_report_fraction, config.seed + 2)
        if external_scans
        else ([], [])
    )
    features = ensemble_features(network, config.model.members)
    stats = FeatureStats.fit(predict(features, parts.x_train))
    scope_network = _fit_scope_network(parts.train_greys, parts.x_train, load_images(external_fit), config, log)
    section = _choose_scope_thresholds(scope_network, features, stats, parts.x_select, config)
    check = ScopeCheck(section.in_scope_threshold, section.distance_threshold, stats)
    section.rates = _scope_rates(scope_network, features, check, parts.x_report, parts.report_greys, config, log)
    external_figures = []
    if external is not None and external_report:
        outside = _external_figures(
            external, external_report, network, scope_network, features, check, operating_point, config, log
        )
        outside.scans_teaching_the_scope_check = len(external_fit)
        external_figures.append(outside)
        section.rates["outside the training population (external report part)"] = outside.out_of_scope_rate
    return FittedScope(scope_network, stats, section, external_figures)


def _fit_scope_network(
    train_greys: list[np.ndarray], x_train: np.ndarray, external_greys: list[np.ndarray], config: TrainConfig, log: Log
) -> Any:
    """Train the scope network: training scans in scope; external films, wrong renderings and non-radiographs out."""
    import keras
    import tensorflow as tf

    scope = config.scope
    size = config.model.image_size
    # No more made examples of a kind than there are training scans: the kinds stay balanced on small data sets.
    made, kinds = synthetic_out_of_scope(
        train_greys, replace(scope, synthetic_per_kind=min(scope.synthetic_per_kind, len(train_greys))), config.seed + 3
    )
    negatives = [preprocess_all(made, size)]
    negative_kinds = [kinds]
    if external_greys:
        negatives.append(preprocess_all(external_greys, size))
        negative_kinds.append(np.ones(len(external_greys), int))
    x = np.concatenate([x_train, *negatives])
    y = np.concatenate([np.zeros(len(x_train), int), *negative_kinds])
    counts = np.bincount(y, minlength=len(SCOPE_REASONS))
    # In scope weighs as much as all out-of-scope kinds together, and each kind present the same.
    kinds_present = int((counts[1:] > 0).sum())
    per_class = [len(y) / (2 * counts[0])] + [len(y) / (2 * kinds_present * n) if n else 0.0 for n in counts[1:]]
    weights = tf.constant(per_class, tf.float32)
    # Stronger zoom-in than the classifier's: a tightly collimated film (thorax filling the frame) is in scope.
    augmenter = build_augmenter(replace(config.augment, zoom_in=0.35), config.seed + 4)
    batches = (
        tf.data.Dataset.from_tensor_slices((x, y.astype("int32")))
        .shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
        .batch(scope.batch_size)
        .map(
            lambda images, kind: (augmenter(images, training=True), kind, tf.gather(weights, kind)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(2)
    )
    network = build_scope_model(scope, size)
    steps = scope.epochs * int(np.ceil(len(x) / scope.batch_size))
    network.compile(
        optimizer=keras.optimizers.AdamW(keras.optimizers.schedules.CosineDecay(scope.learning_rate, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    log(
        f"scope network: {counts[0]} in scope, {counts[1]} external, {counts[2]} rotated or inverted, "
        f"{counts[3]} not radiographs"
    )
    network.fit(
        batches,
        epochs=scope.epochs,
        verbose=0,
        callbacks=[
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: log(f"scope epoch {epoch + 1}/{scope.epochs}: loss {logs['loss']:.4f}")
            )
        ],
    )
    return network


def _scope_outputs(scope_network: Any, features: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return predict(scope_network, x), predict(features, x)


def _choose_scope_thresholds(
    scope_network: Any, features: Any, stats: FeatureStats, x_select: np.ndarray, config: TrainConfig
) -> ScopeSection:
    """Each threshold keeps TARGET_IN_SCOPE_RATE of the selection scans in scope (all of which are in scope)."""
    scope_logits, feats = _scope_outputs(scope_network, features, x_select)
    keep = config.scope.target_in_scope_rate
    return ScopeSection(
        method=METHOD,
        in_scope_threshold=float(np.quantile(softmax(scope_logits)[:, IN_SCOPE], 1 - keep)),
        distance_threshold=float(np.quantile(stats.distance(feats), keep)),
        threshold_rule=f"each keeps {keep:.1%} of the selection part of validation in scope",
        weights_file=SCOPE_WEIGHTS_FILE,
        features_file=FEATURE_STATS_FILE,
    )


def _scope_rates(
    scope_network: Any,
    features: Any,
    check: ScopeCheck,
    x_report: np.ndarray,
    report_greys: list[np.ndarray],
    config: TrainConfig,
    log: Log,
) -> dict[str, float]:
    """Share judged out of scope on the report part, and on wrong renderings and non-radiographs made from it."""
    made, kinds = synthetic_out_of_scope(report_greys, replace(config.scope, synthetic_per_kind=300), config.seed + 5)
    x_made = preprocess_all(made, config.model.image_size)
    rates = {"validation (report part), in scope": _flagged(scope_network, features, check, x_report)}
    rates["rotated or inverted films (made from the report part)"] = _flagged(
        scope_network, features, check, x_made[kinds == 2]
    )
    rates["not chest radiographs: crops, noise, flat, gradients, shapes, text"] = _flagged(
        scope_network, features, check, x_made[kinds == 3]
    )
    for name, rate in rates.items():
        log(f"  out of scope: {rate:.3f} of {name}")
    return rates


def _flagged(scope_network: Any, features: Any, check: ScopeCheck, x: np.ndarray) -> float:
    scope_logits, feats = _scope_outputs(scope_network, features, x)
    return float(check.flags(scope_logits, feats).mean())


def _external_figures(
    folder: Path,
    scans: list[LabelledScan],
    network: Any,
    scope_network: Any,
    features: Any,
    check: ScopeCheck,
    operating_point: OperatingPoint,
    config: TrainConfig,
    log: Log,
) -> ExternalFigures:
    """The classifier on an outside population: all its report scans, PA films alone, and the scans the check keeps."""
    labels = labels_of(scans)
    x = preprocess_all(load_images(scans), config.model.image_size)
    probability = operating_point.probability(logits(network, x))
    threshold = operating_point.threshold
    scope_logits, feats = _scope_outputs(scope_network, features, x)
    flagged = check.flags(scope_logits, feats)
    outside = ExternalFigures(
        name=Path(folder).name,
        folder=str(folder),
        all=figures(labels, probability, threshold, config),
        out_of_scope_rate=float(flagged.mean()),
    )
    views = _views(folder, scans)
    if views is not None and (views == "PA").sum() > 10 and len(np.unique(labels[views == "PA"])) == 2:
        outside.pa_films = figures(labels[views == "PA"], probability[views == "PA"], threshold, config)
    kept = ~flagged
    if kept.sum() >= 10 and len(np.unique(labels[kept])) == 2:
        outside.kept_by_scope_check = figures(labels[kept], probability[kept], threshold, config)
    log(
        f"external {outside.name}: AUC {outside.all.auc:.3f}, specificity {outside.all.specificity:.3f}; "
        f"{flagged.mean():.1%} judged out of scope"
    )
    return outside


def _views(folder: Path, scans: list[LabelledScan]) -> np.ndarray | None:
    """The view (PA, AP) of each scan from a manifest.csv with columns file,view beside the class folders, if any."""
    manifest = Path(folder) / "manifest.csv"
    if not manifest.exists():
        return None
    with open(manifest, newline="") as stream:
        view_of = {Path(record["file"]).name: record.get("view", "") for record in csv.DictReader(stream)}
    return np.array([view_of.get(s.path.name, "") for s in scans])
