"""Training the bundled model: patient split, augmentation, class weights, early stopping, card."""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from xscan import __version__
from xscan.augment import AugmentConfig, build_augmenter
from xscan.calibration import (
    brier_score,
    expected_calibration_error,
    fit_platt,
    threshold_for_sensitivity,
)
from xscan.card import ModelCard, calibrated_probability, save_bundle
from xscan.classes import CLASS_NAMES
from xscan.dataset import LabelledScan, find_labelled_scans, split_by_patient
from xscan.decode import decode
from xscan.metrics import binary_metrics
from xscan.model import MODEL_NAME, ModelConfig, build_model, member_logits
from xscan.preprocess import preprocess
from xscan.robustness import SHIFTS, Shift


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe; recorded whole in the model card."""

    # --- data
    val_fraction: float = 0.15  # share of patients held out for validation
    seed: int = 1337
    # --- optimisation
    epochs: int = 30  # at most; early stopping usually ends sooner
    batch_size: int = 32
    learning_rate: float = 2e-3  # AdamW peak, cosine-decayed to zero over `epochs`
    label_smoothing: float = 0.05
    patience: int = 10  # epochs without a better validation AUC before stopping
    # --- operating point
    target_sensitivity: float = 0.95  # the shipped threshold reaches this on validation
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


Log = Callable[[str], None]


def load_images(scans: Iterable[LabelledScan]) -> list[np.ndarray]:
    """Decode every scan to grey, in parallel (OpenCV releases the GIL)."""
    with ThreadPoolExecutor() as pool:
        return list(pool.map(lambda scan: decode(scan.path), scans))


def preprocess_all(greys: Iterable[np.ndarray], image_size: int) -> np.ndarray:
    return np.stack([preprocess(grey, image_size) for grey in greys])


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Weights that make both classes count equally in the loss (n / (2 * n_class))."""
    counts = np.bincount(labels, minlength=2)
    return {c: float(labels.size / (2 * counts[c])) for c in range(2)}


def train(
    data_dir: Path,
    out_dir: Path,
    config: TrainConfig,
    command: str,
    log: Log = print,
) -> ModelCard:
    """Train on DATA_DIR, write weights and model card into OUT_DIR, return the card."""
    import keras

    keras.utils.set_random_seed(config.seed)
    started = dt.datetime.now(dt.UTC)
    scans = find_labelled_scans(data_dir)
    train_scans, val_scans = split_by_patient(scans, config.val_fraction, config.seed)
    if not train_scans or not val_scans or len({s.label for s in val_scans}) < 2:
        raise ValueError("too few patients to split into training and validation sets with both classes")
    log(f"{len(scans)} scans: {len(train_scans)} for training, {len(val_scans)} for validation (split by patient)")

    size = config.model.image_size
    y_train = np.array([s.label for s in train_scans])
    y_val = np.array([s.label for s in val_scans])
    x_train = preprocess_all(load_images(train_scans), size)
    val_greys = load_images(val_scans)
    x_val = preprocess_all(val_greys, size)

    network = build_model(config.model)
    fitted_epochs = _fit(network, x_train, y_train, x_val, y_val, config, log)

    val_logits = _logits(network, x_val)
    temperature, bias = fit_platt(val_logits, y_val)
    val_probability = calibrated_probability(val_logits, temperature, bias)
    threshold = threshold_for_sensitivity(val_probability, y_val, config.target_sensitivity)
    validation = binary_metrics(y_val, val_probability, threshold)
    validation["brier"] = brier_score(val_probability, y_val)
    validation["ece"] = expected_calibration_error(val_probability, y_val)
    validation["ece_before_calibration"] = expected_calibration_error(calibrated_probability(val_logits, 1.0), y_val)
    log(f"validation: AUC {validation['auc']:.4f}, sensitivity {validation['sensitivity']:.3f}, "
        f"specificity {validation['specificity']:.3f} at threshold {threshold:.3f} (T={temperature:.2f}, bias {bias:.2f})")

    robustness = evaluate_shifts(network, val_greys, y_val, size, (temperature, bias), threshold)
    for row in robustness:
        log(f"  shift {row['shift']:<18} AUC {row['auc']:.4f}  specificity {row['specificity']:.3f}  sensitivity {row['sensitivity']:.3f}")

    card = ModelCard(
        name=MODEL_NAME,
        version=__version__,
        config=asdict(config.model),
        preprocessing={"image_size": size, "function": "xscan.preprocess.preprocess",
                       "steps": "grey uint8 -> squash-resize (INTER_AREA) -> histogram equalization -> /255"},
        temperature=temperature,
        bias=bias,
        threshold=threshold,
        threshold_rule=f"highest threshold reaching sensitivity >= {config.target_sensitivity} on the validation split",
        training={
            "command": command,
            "recipe": asdict(config),
            "data": {
                "source": "Kermany et al. 2018 pediatric chest X-ray, training split (Guangzhou; CC BY 4.0)",
                "folder": str(data_dir),
                "train": _counts(y_train),
                "validation": _counts(y_val),
                "validation_patients": len({s.patient_id for s in val_scans}),
            },
            "class_weights": class_weights(y_train),
            "epochs_run": fitted_epochs["run"],
            "best_epoch": fitted_epochs["best"],
            "started": started.isoformat(timespec="seconds"),
            "minutes": round((dt.datetime.now(dt.UTC) - started).total_seconds() / 60, 1),
            "xscan_version": __version__,
            "keras_version": keras.__version__,
        },
        validation=validation,
        robustness=robustness,
    )
    return save_bundle(network, card, out_dir)


def _counts(labels: np.ndarray) -> dict[str, int]:
    return {name: int((labels == i).sum()) for i, name in enumerate(CLASS_NAMES)}


def _fit(network, x_train, y_train, x_val, y_val, config: TrainConfig, log: Log) -> dict[str, int]:
    """Train every member on the same augmented batches, each with its own loss; keep the best epoch.

    The best epoch is the one with the highest validation AUC of the averaged logit: the output
    that is shipped, not any single member's.
    """
    import keras
    import tensorflow as tf

    members = config.model.members
    trainable = member_logits(network, members)
    augmenter = build_augmenter(config.augment, config.seed)
    per_class = class_weights(y_train)
    weights = tf.constant([per_class[0], per_class[1]], tf.float32)

    def augment(x, y):
        # Every member sees the same label; class weights enter as per-scan sample weights.
        return augmenter(x, training=True), tf.tile(tf.cast(y, tf.float32)[:, None], [1, members]), tf.gather(weights, y)

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
                keras.callbacks.ModelCheckpoint(best, monitor="val_auc", mode="max", save_best_only=True, save_weights_only=True),
                keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=config.patience),
                keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: log(_epoch_line(epoch, config.epochs, logs))),
            ],
            verbose=0,
        )
        trainable.load_weights(best)
    return {"run": len(validation.history), "best": int(np.argmax(validation.history)) + 1}


def _ensemble_validation(network, x_val: np.ndarray, y_val: np.ndarray):
    """A Keras callback adding val_auc and val_loss of the shipped (averaged) logit to each epoch's logs."""
    import keras

    class EnsembleValidation(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.history: list[float] = []

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logits = _logits(network, x_val)
            probability = np.clip(calibrated_probability(logits, 1.0), 1e-7, 1 - 1e-7)
            logs = logs if logs is not None else {}
            logs["val_auc"] = float(roc_auc_score(y_val, logits))
            logs["val_loss"] = float(log_loss(y_val, probability, labels=[0, 1]))
            self.history.append(logs["val_auc"])

    return EnsembleValidation()


def _epoch_line(epoch: int, epochs: int, logs: dict) -> str:
    return f"epoch {epoch + 1}/{epochs}: loss {logs['loss']:.4f}  val_loss {logs['val_loss']:.4f}  val_auc {logs['val_auc']:.4f}"


def _logits(network, x: np.ndarray) -> np.ndarray:
    return np.asarray(network.predict(x, batch_size=64, verbose=0)).reshape(-1).astype(np.float64)


def evaluate_shifts(
    network, greys: list[np.ndarray], labels: np.ndarray, image_size: int, calibration: tuple[float, float], threshold: float,
    shifts: dict[str, Shift] = SHIFTS,
) -> list[dict[str, float | str]]:
    """AUC, sensitivity and specificity on GREYS after each acquisition shift, at THRESHOLD."""
    rows = []
    for name, shift in shifts.items():
        x = preprocess_all((shift(grey) for grey in greys), image_size)
        probability = calibrated_probability(_logits(network, x), *calibration)
        metrics = binary_metrics(labels, probability, threshold)
        rows.append({"shift": name, **{k: metrics[k] for k in ("auc", "sensitivity", "specificity", "accuracy")}})
    return rows
