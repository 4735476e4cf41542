"""Fitting the classifier ensemble: class weights, augmented batches, the ensemble's validation AUC, early stopping."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from xscan.model.card import calibrated_probability
from xscan.model.classes import CLASS_NAMES
from xscan.model.network import member_logits
from xscan.training.augment import build_augmenter
from xscan.training.config import Log, TrainConfig


@dataclass(frozen=True)
class FittedEpochs:
    """How many epochs ran, and which one (counted from 1) had the best selection AUC: its weights are kept."""

    run: int
    best: int


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Weights that make both classes count equally in the loss (n / (2 * n_class)).

    Args:
        labels: the training labels (0, 1).

    Returns:
        The weight of each class index.
    """
    counts = np.bincount(labels, minlength=2)
    return {c: float(labels.size / (2 * counts[c])) for c in range(2)}


def named_class_weights(labels: np.ndarray) -> dict[str, float]:
    """`class_weights` keyed by class name, as the card records them."""
    return {CLASS_NAMES[index]: weight for index, weight in class_weights(labels).items()}


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    """MODEL's outputs for X as float64 (Keras, batches of 64, quietly)."""
    return np.asarray(model.predict(x, batch_size=64, verbose=0), np.float64)


def logits(network: Any, x: np.ndarray) -> np.ndarray:
    """The ensemble NETWORK's averaged logit of each input in X."""
    return predict(network, x).reshape(-1)


def fit_classifier(
    network: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    log: Log,
) -> FittedEpochs:
    """Train every member of NETWORK on the same augmented batches, each with its own loss; keep the best epoch.

    The best epoch is the one with the highest validation AUC of the averaged logit: the output
    that is shipped, not any single member's.

    Args:
        network: the ensemble (xscan.model.network.build_model); its weights end as the best epoch's.
        x_train: training inputs.
        y_train: their labels.
        x_val: the selection part's inputs, which choose the epoch.
        y_val: their labels.
        config: the recipe.
        log: where each epoch's line goes.

    Returns:
        The epochs run and the best one.
    """
    import keras
    import tensorflow as tf

    members = config.model.members
    trainable = member_logits(network, members)
    augmenter = build_augmenter(config.augment, config.seed)
    per_class = class_weights(y_train)
    weights = tf.constant([per_class[0], per_class[1]], tf.float32)

    def augment(x: Any, y: Any) -> tuple[Any, Any, Any]:
        # Every member sees the same label; class weights enter as per-scan sample weights.
        return (
            augmenter(x, training=True, labels=y),
            tf.tile(tf.cast(y, tf.float32)[:, None], [1, members]),
            tf.gather(weights, y),
        )

    batches = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train.astype("int32")))
        .shuffle(len(x_train), seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(2)
    )
    steps = config.epochs * int(np.ceil(len(x_train) / config.batch_size))
    trainable.compile(
        optimizer=keras.optimizers.AdamW(
            keras.optimizers.schedules.CosineDecay(config.learning_rate, steps),
            weight_decay=config.model.weight_decay,
        ),
        loss=keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=config.label_smoothing),
    )
    validation = _ensemble_validation(network, x_val, y_val)
    with tempfile.TemporaryDirectory() as tmp:
        best = Path(tmp) / "best.weights.h5"
        trainable.fit(
            batches,
            epochs=config.epochs,
            shuffle=False,  # the dataset shuffles itself, seeded
            callbacks=[
                validation,  # first: the callbacks after it read the val_auc it adds to the epoch's logs
                keras.callbacks.ModelCheckpoint(
                    best, monitor="val_auc", mode="max", save_best_only=True, save_weights_only=True
                ),
                keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=config.patience),
                keras.callbacks.LambdaCallback(
                    on_epoch_end=lambda epoch, logs: log(_epoch_line(epoch, config.epochs, logs))
                ),
            ],
            verbose=0,
        )
        trainable.load_weights(best)
    return FittedEpochs(run=len(validation.history), best=int(np.argmax(validation.history)) + 1)


def _ensemble_validation(network: Any, x_val: np.ndarray, y_val: np.ndarray) -> Any:
    """A Keras callback adding val_auc and val_loss of the shipped (averaged) logit to each epoch's logs."""
    import keras

    class EnsembleValidation(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.history: list[float] = []

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            val_logits = logits(network, x_val)
            probability = np.clip(calibrated_probability(val_logits, 1.0), 1e-7, 1 - 1e-7)
            logs = logs if logs is not None else {}
            logs["val_auc"] = float(roc_auc_score(y_val, val_logits))
            logs["val_loss"] = float(log_loss(y_val, probability, labels=[0, 1]))
            self.history.append(logs["val_auc"])

    return EnsembleValidation()


def _epoch_line(epoch: int, epochs: int, logs: dict[str, float]) -> str:
    return (
        f"epoch {epoch + 1}/{epochs}: loss {logs['loss']:.4f}  val_loss {logs['val_loss']:.4f}  "
        f"val_auc {logs['val_auc']:.4f}"
    )
