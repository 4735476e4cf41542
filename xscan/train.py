"""Training the bundled model: patient split, augmentation, class weights, early stopping, card."""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from xscan import __version__
from xscan.augment import AugmentConfig, build_augmenter
from xscan.calibration import (
    brier_score,
    expected_calibration_error,
    fit_temperature,
    threshold_for_sensitivity,
)
from xscan.dataset import CLASS_NAMES, LabelledScan, find_labelled_scans, split_by_patient
from xscan.decode import decode
from xscan.metrics import binary_metrics
from xscan.model import MODEL_NAME, ModelCard, ModelConfig, build_model, calibrated_probability, save_bundle
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
    patience: int = 6  # epochs without a better validation AUC before stopping
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
    temperature = fit_temperature(val_logits, y_val)
    val_probability = calibrated_probability(val_logits, temperature)
    threshold = threshold_for_sensitivity(val_probability, y_val, config.target_sensitivity)
    validation = binary_metrics(y_val, val_probability, threshold)
    validation["brier"] = brier_score(val_probability, y_val)
    validation["ece"] = expected_calibration_error(val_probability, y_val)
    validation["ece_before_calibration"] = expected_calibration_error(calibrated_probability(val_logits, 1.0), y_val)
    log(f"validation: AUC {validation['auc']:.4f}, sensitivity {validation['sensitivity']:.3f}, "
        f"specificity {validation['specificity']:.3f} at threshold {threshold:.3f} (T={temperature:.2f})")

    robustness = evaluate_shifts(network, val_greys, y_val, size, temperature, threshold)
    for row in robustness:
        log(f"  shift {row['shift']:<18} AUC {row['auc']:.4f}  specificity {row['specificity']:.3f}  sensitivity {row['sensitivity']:.3f}")

    card = ModelCard(
        name=MODEL_NAME,
        version=__version__,
        config=asdict(config.model),
        preprocessing={"image_size": size, "function": "xscan.preprocess.preprocess",
                       "steps": "grey uint8 -> squash-resize (INTER_AREA) -> histogram equalization -> /255"},
        temperature=temperature,
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
    import keras
    import tensorflow as tf

    augmenter = build_augmenter(config.augment, config.seed)
    batches = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train.astype("float32")))
        .shuffle(len(x_train), seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
        .map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(2)
    )
    steps = config.epochs * int(np.ceil(len(x_train) / config.batch_size))
    network.compile(
        optimizer=keras.optimizers.AdamW(
            keras.optimizers.schedules.CosineDecay(config.learning_rate, steps),
            weight_decay=config.model.weight_decay,
        ),
        loss=keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.AUC(name="auc", from_logits=True)],
    )
    with tempfile.TemporaryDirectory() as tmp:
        best = Path(tmp) / "best.weights.h5"
        history = network.fit(
            batches,
            validation_data=(x_val, y_val.astype("float32")),
            epochs=config.epochs,
            class_weight=class_weights(y_train),
            shuffle=False,  # the dataset shuffles itself, seeded
            callbacks=[
                keras.callbacks.ModelCheckpoint(best, monitor="val_auc", mode="max", save_best_only=True, save_weights_only=True),
                keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=config.patience),
                keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: log(_epoch_line(epoch, config.epochs, logs))),
            ],
            verbose=0,
        )
        network.load_weights(best)
    val_auc = history.history["val_auc"]
    return {"run": len(val_auc), "best": int(np.argmax(val_auc)) + 1}


def _epoch_line(epoch: int, epochs: int, logs: dict) -> str:
    return (f"epoch {epoch + 1}/{epochs}: loss {logs['loss']:.4f}  auc {logs['auc']:.4f}  "
            f"val_loss {logs['val_loss']:.4f}  val_auc {logs['val_auc']:.4f}")


def _logits(network, x: np.ndarray) -> np.ndarray:
    return np.asarray(network.predict(x, batch_size=64, verbose=0)).reshape(-1).astype(np.float64)


def evaluate_shifts(
    network, greys: list[np.ndarray], labels: np.ndarray, image_size: int, temperature: float, threshold: float,
    shifts: dict[str, Shift] = SHIFTS,
) -> list[dict[str, float | str]]:
    """AUC, sensitivity and specificity on GREYS after each acquisition shift, at THRESHOLD."""
    rows = []
    for name, shift in shifts.items():
        x = preprocess_all((shift(grey) for grey in greys), image_size)
        probability = calibrated_probability(_logits(network, x), temperature)
        metrics = binary_metrics(labels, probability, threshold)
        rows.append({"shift": name, **{k: metrics[k] for k in ("auc", "sensitivity", "specificity", "accuracy")}})
    return rows
