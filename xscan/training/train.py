"""Training the bundled model: patient split, augmentation, class weights, early stopping, card."""

from __future__ import annotations

import csv
import datetime as dt
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from xscan.about import __version__
from xscan.errors import TrainingDataError, WeightsError
from xscan.input.decode import decode
from xscan.input.preprocess import preprocess
from xscan.model.bundle import save_bundle, write_litert
from xscan.model.card import (
    CARD_FILE,
    ModelCard,
    calibrated_probability,
    load_network,
    model_config_from_card,
    read_card,
)
from xscan.model.classes import CLASS_NAMES
from xscan.model.native_notes import import_keras_quietly
from xscan.model.network import MODEL_NAME, ModelConfig, build_model, ensemble_features, member_logits
from xscan.model.scope import (
    FEATURE_STATS_FILE,
    IN_SCOPE,
    SCOPE_REASONS,
    SCOPE_WEIGHTS_FILE,
    FeatureStats,
    ScopeCheck,
    ScopeConfig,
    build_scope_model,
    save_scope,
    softmax,
)
from xscan.stats.calibration import (
    brier_score,
    expected_calibration_error,
    fit_platt,
    threshold_for_sensitivity,
)
from xscan.stats.intervals import PROPORTIONS, bootstrap_intervals, wilson_interval
from xscan.stats.metrics import binary_metrics
from xscan.training.augment import AugmentConfig, build_augmenter
from xscan.training.dataset import LabelledScan, find_labelled_scans, per_file_share, split_by_patient
from xscan.training.reference import store_reference
from xscan.training.robustness import SHIFTS, Shift
from xscan.training.scope_examples import synthetic_out_of_scope

INTENDED_POPULATION = (
    "Frontal chest radiographs of children (about 1 to 5 years old) from one hospital (Guangzhou Women and "
    "Children's Medical Center), as in the Kermany et al. 2018 data set. Adult films, other hospitals' "
    "equipment and other views are outside it."
)
# What a new site should expect of the card's figures; written into every card `train` makes or refits. The example is
# the project's own measurement of run H on the data set's held-out test split (issue 23): update it with the model.
SITE_GUIDANCE = (
    "The report part's figures hold for scans like the training hospital's. At another period or site, expect the "
    "threshold to move: on scans of another period of the same data set, specificity at the shipped threshold fell "
    "from 0.96 to 0.80 (sensitivity 0.98, AUC 0.98): the ranking travelled, the threshold did not. Run `xscan calibrate` "
    "on a labelled local sample to set your own threshold, and `xscan drift` on every run to learn when your scans "
    "stop looking like the ones it was calibrated on."
)


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe; recorded whole in the model card."""

    # --- data
    val_fraction: float = 0.2  # share of patients held out from training
    report_fraction: float = 0.5  # of those, the share kept for the card's figures only; the rest select
    seed: int = 1337
    # --- optimisation
    epochs: int = 30  # at most; early stopping usually ends sooner
    batch_size: int = 32
    learning_rate: float = 2e-3  # AdamW peak, cosine-decayed to zero over `epochs`
    label_smoothing: float = 0.05
    patience: int = 10  # epochs without a better selection AUC before stopping
    # --- operating point
    target_sensitivity: float = 0.95  # the shipped threshold reaches this on the selection part
    bootstrap: int = 1000  # resamples for the AUC intervals in the card
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    scope: ScopeConfig = field(default_factory=ScopeConfig)


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


def split_for_training(scans: list[LabelledScan], config: TrainConfig) -> tuple[list[LabelledScan], ...]:
    """(train, select, report): three patient-disjoint parts.

    SELECT chooses the epoch, the calibration and both thresholds; REPORT chooses nothing and gives
    every figure in the card, so none holds by construction.
    """
    train_scans, held_out = split_by_patient(scans, config.val_fraction, config.seed)
    select_scans, report_scans = split_by_patient(held_out, config.report_fraction, config.seed + 1)
    for name, part in (("training", train_scans), ("selection", select_scans), ("report", report_scans)):
        if len({s.label for s in part}) < 2:
            raise TrainingDataError(f"too few patients to make a {name} part with both classes")
    return train_scans, select_scans, report_scans


def train(
    data_dir: Path,
    out_dir: Path,
    config: TrainConfig,
    command: str,
    log: Log = print,
    external: Path | None = None,
    labels_file: Path | None = None,
) -> ModelCard:
    """Train on DATA_DIR, write weights, scope check and model card into OUT_DIR, return the card.

    EXTERNAL is an optional labelled folder from outside the intended population (adult films of
    another hospital): part of its patients teach the scope check what "another population" looks
    like, the rest are scored for the card's out-of-population figures.
    """
    keras = import_keras_quietly()
    keras.utils.set_random_seed(config.seed)
    started = dt.datetime.now(dt.UTC)
    scans = find_labelled_scans(data_dir, labels_file)
    if per_file_share(scans) > 0:
        log(
            f"warning: {per_file_share(scans):.0%} of the scans have no patient information (no DICOM PatientID, no "
            "patient column, no known file-name pattern): each is its own patient, so one patient's scans may fall on "
            "both sides of the split and flatter validation"
        )
    train_scans, select_scans, report_scans = split_for_training(scans, config)
    log(
        f"{len(scans)} scans: {len(train_scans)} for training, {len(select_scans)} to select, "
        f"{len(report_scans)} to report (split by patient)"
    )

    size = config.model.image_size
    y_train, y_select, y_report = (
        np.array([s.label for s in part]) for part in (train_scans, select_scans, report_scans)
    )
    train_greys = load_images(train_scans)
    x_train = preprocess_all(train_greys, size)
    x_select = preprocess_all(load_images(select_scans), size)
    report_greys = load_images(report_scans)
    x_report = preprocess_all(report_greys, size)

    network = build_model(config.model)
    fitted_epochs = _fit(network, x_train, y_train, x_select, y_select, config, log)

    select_logits = _logits(network, x_select)
    try:
        temperature, bias = fit_platt(select_logits, y_select)
    except ValueError as error:  # a model that does not rank the selection part (too short a run, too little data)
        log(f"warning: {error}; the card keeps the raw logits (temperature 1, bias 0)")
        temperature, bias = 1.0, 0.0
    threshold = threshold_for_sensitivity(
        calibrated_probability(select_logits, temperature, bias), y_select, config.target_sensitivity
    )
    selection = _figures(y_select, calibrated_probability(select_logits, temperature, bias), threshold, config)
    report_logits = _logits(network, x_report)
    validation = _figures(y_report, calibrated_probability(report_logits, temperature, bias), threshold, config)
    validation["ece_before_calibration"] = expected_calibration_error(
        calibrated_probability(report_logits, 1.0), y_report
    )
    log(
        f"report part: AUC {validation['auc']:.4f}, sensitivity {validation['sensitivity']:.3f}, "
        f"specificity {validation['specificity']:.3f} at threshold {threshold:.3f} (T={temperature:.2f}, bias {bias:.2f})"
    )

    robustness = evaluate_shifts(network, report_greys, y_report, size, (temperature, bias), threshold)
    for row in robustness:
        log(
            f"  shift {row['shift']:<18} AUC {row['auc']:.4f}  specificity {row['specificity']:.3f}  sensitivity {row['sensitivity']:.3f}"
        )

    scope_network, stats, scope, external_figures = fit_scope_check(
        network,
        TrainingParts(train_greys, x_train, x_select, x_report, report_greys),
        external,
        (temperature, bias),
        threshold,
        config,
        log,
    )

    card = ModelCard(
        name=MODEL_NAME,
        version=__version__,
        config=asdict(config.model),
        preprocessing={
            "image_size": size,
            "function": "xscan.input.preprocess.preprocess",
            "steps": "grey uint8 -> squash-resize (INTER_AREA) -> histogram equalization -> /255",
        },
        temperature=temperature,
        bias=bias,
        threshold=threshold,
        threshold_rule=f"highest threshold reaching sensitivity >= {config.target_sensitivity} on the selection part of validation",
        training={
            "command": command,
            "recipe": asdict(config),
            "data": {
                "source": "Kermany et al. 2018 pediatric chest X-ray, training split (Guangzhou; CC BY 4.0)",
                "folder": str(data_dir),
                "train": _counts(y_train),
                "selection": _counts(y_select),
                "report": _counts(y_report),
                "selection_patients": len({s.patient_id for s in select_scans}),
                "report_patients": len({s.patient_id for s in report_scans}),
                "external": str(external) if external else None,
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
        intended_population=INTENDED_POPULATION,
        site_guidance=SITE_GUIDANCE,
        selection=selection,
        external=external_figures,
        scope=scope,
    )
    card.scope.update(save_scope(out_dir, scope_network, stats, config.scope, size))
    save_bundle(network, card, out_dir, scope_network)
    return refit_reference(data_dir, out_dir, command, labels_file)  # scored by the bundle as saved


@dataclass(frozen=True)
class TrainingParts:
    """The decoded and preprocessed scans of the three parts, as the scope check needs them."""

    train_greys: list[np.ndarray]
    x_train: np.ndarray
    x_select: np.ndarray
    x_report: np.ndarray
    report_greys: list[np.ndarray]


def fit_scope_check(
    network,
    parts: TrainingParts,
    external: Path | None,
    calibration: tuple[float, float],
    threshold: float,
    config: TrainConfig,
    log: Log,
) -> tuple[Any, FeatureStats, dict[str, Any], list[dict[str, Any]]]:
    """Fit the out-of-scope check for NETWORK; returns the scope network, feature statistics, card section, external figures."""
    external_scans = find_labelled_scans(external) if external else []
    external_fit, external_report = (
        split_by_patient(external_scans, config.scope.external_report_fraction, config.seed + 2)
        if external_scans
        else ([], [])
    )
    features = ensemble_features(network, config.model.members)
    stats = FeatureStats.fit(_predict(features, parts.x_train))
    scope_network = _fit_scope(parts.train_greys, parts.x_train, load_images(external_fit), config, log)
    scope = _choose_scope_thresholds(scope_network, features, stats, parts.x_select, config)
    scope_check = ScopeCheck(scope["in_scope_threshold"], scope["distance_threshold"], stats)
    scope["rates"] = _scope_rates(scope_network, features, scope_check, parts.x_report, parts.report_greys, config, log)
    external_figures = []
    if external_report:
        external_figures.append(
            _external_figures(
                external,
                external_report,
                network,
                scope_network,
                features,
                scope_check,
                calibration,
                threshold,
                config,
                log,
            )
        )
        external_figures[0]["scans_teaching_the_scope_check"] = len(external_fit)
        scope["rates"]["outside the training population (external report part)"] = external_figures[0][
            "out_of_scope_rate"
        ]
    return scope_network, stats, scope, external_figures


def refit_scope(
    data_dir: Path,
    weights_dir: Path,
    config: TrainConfig,
    command: str,
    log: Log = print,
    external: Path | None = None,
    labels_file: Path | None = None,
) -> ModelCard:
    """Fit the out-of-scope check again for the trained model in WEIGHTS_DIR, with CONFIG's scope recipe; the classifier stays.

    The split is the card's own (its fractions and seed), so the check is fitted, thresholded and
    reported on the same three parts the classifier was. The LiteRT file is written again with the new scope head.
    """
    keras = import_keras_quietly()
    keras.utils.set_random_seed(config.seed)
    card = read_card(weights_dir)
    config = replace(
        card_split(card, config), model=model_config_from_card(card)
    )  # the trained model's shape, not the recipe's
    network = load_network(weights_dir, card)
    train_scans, select_scans, report_scans = split_for_training(find_labelled_scans(data_dir, labels_file), config)
    size = card.image_size
    train_greys, report_greys = load_images(train_scans), load_images(report_scans)
    parts = TrainingParts(
        train_greys,
        preprocess_all(train_greys, size),
        preprocess_all(load_images(select_scans), size),
        preprocess_all(report_greys, size),
        report_greys,
    )
    scope_network, stats, scope, external_figures = fit_scope_check(
        network,
        parts,
        external,
        (card.temperature, card.bias),
        card.threshold,
        config,
        log,
    )
    card.scope = scope | save_scope(weights_dir, scope_network, stats, config.scope, size)
    card.external = external_figures
    card.site_guidance = SITE_GUIDANCE
    card.training["recipe"]["scope"] = asdict(config.scope)
    card.training["scope_command"] = command
    card.litert = write_litert(weights_dir, card, network, scope_network)
    (weights_dir / CARD_FILE).write_text(card.to_json())
    return refit_reference(
        data_dir, weights_dir, command, labels_file
    )  # the scope score's reference is the new network's


def refit_reference(data_dir: Path, weights_dir: Path, command: str, labels_file: Path | None = None) -> ModelCard:
    """Compute the drift reference of the model in WEIGHTS_DIR again, on the validation patients of the card's own split; the model stays.

    Re-runnable: only the card's `drift` section, its `site_guidance` (which tells a site to run the
    drift check) and `training.reference_command` change. `train` and `refit_scope` end with it.
    """
    card = read_card(weights_dir)
    _, select, report = split_for_training(find_labelled_scans(data_dir, labels_file), card_split(card))
    store_reference(weights_dir, card, select + report, load_images(select + report))
    card.site_guidance = SITE_GUIDANCE
    card.training["reference_command"] = command
    (weights_dir / CARD_FILE).write_text(card.to_json())
    return card


def card_split(card: ModelCard, config: TrainConfig | None = None) -> TrainConfig:
    """CONFIG (default: the recipe) with the split a trained model's CARD records: its fractions and seed."""
    recipe = card.training["recipe"]
    return replace(
        config or TrainConfig(),
        val_fraction=recipe["val_fraction"],
        report_fraction=recipe["report_fraction"],
        seed=recipe["seed"],
    )


def convert_to_litert(weights_dir: Path, command: str, log: Log = print) -> ModelCard:
    """Write WEIGHTS_DIR's LiteRT file (the network scoring runs) from its Keras weights and scope check; nothing is trained.

    For a weights folder written before `xscan train` wrote the LiteRT file itself: the weights,
    their sha256 and so the model id stay; the card gains the file's name and sha256, and COMMAND
    (the `xscan train ... --litert-only` that made it) beside the training command.
    """
    from xscan.model.scope import ScopeFilesError, load_scope_network

    card = read_card(weights_dir)
    network = load_network(weights_dir, card)
    try:
        scope_network = load_scope_network(weights_dir, card) if card.scope else None
    except (ScopeFilesError, OSError, KeyError) as error:
        raise WeightsError(f"cannot load the out-of-scope check: {error}") from None
    card.litert = write_litert(weights_dir, card, network, scope_network)
    card.training["litert_command"] = command
    (weights_dir / CARD_FILE).write_text(card.to_json())
    log(
        f"wrote {weights_dir / card.litert['file']} ({', '.join(card.litert['outputs'])}; sha256 {card.litert['sha256'][:8]})"
    )
    return card


def _figures(labels: np.ndarray, probability: np.ndarray, threshold: float, config: TrainConfig) -> dict[str, Any]:
    """Metrics at THRESHOLD with 95 % intervals: Wilson for proportions, bootstrap for AUC."""
    figures: dict[str, Any] = binary_metrics(labels, probability, threshold)
    figures["brier"] = brier_score(probability, labels)
    figures["ece"] = expected_calibration_error(probability, labels)
    intervals = {name: wilson_interval(*count(figures)) for name, count in PROPORTIONS.items()}
    if len(np.unique(labels)) == 2:
        boot, _ = bootstrap_intervals(labels, probability, threshold, config.bootstrap, config.seed)
        intervals["auc"] = (boot["auc"].low, boot["auc"].high)
    figures["intervals"] = {name: [float(low), float(high)] for name, (low, high) in intervals.items()}
    return figures


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
    return _predict(network, x).reshape(-1)


def evaluate_shifts(
    network,
    greys: list[np.ndarray],
    labels: np.ndarray,
    image_size: int,
    calibration: tuple[float, float],
    threshold: float,
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


def _predict(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=64, verbose=0), np.float64)


# --- the out-of-scope check ------------------------------------------------------------------------


def _fit_scope(
    train_greys: list[np.ndarray], x_train: np.ndarray, external_greys: list[np.ndarray], config: TrainConfig, log: Log
):
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
        f"scope network: {counts[0]} in scope, {counts[1]} external, {counts[2]} rotated or inverted, {counts[3]} not radiographs"
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


def _scope_outputs(scope_network, features, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _predict(scope_network, x), _predict(features, x)


def _choose_scope_thresholds(
    scope_network, features, stats: FeatureStats, x_select: np.ndarray, config: TrainConfig
) -> dict[str, Any]:
    """Each threshold keeps TARGET_IN_SCOPE_RATE of the selection scans in scope (all of which are in scope)."""
    logits, feats = _scope_outputs(scope_network, features, x_select)
    keep = config.scope.target_in_scope_rate
    return {
        "method": "a small scope network (4 classes: in scope, another population, rotated or inverted, not a chest radiograph) "
        "on the model input, and the Mahalanobis distance of the ensemble's pooled features from the training "
        "scans' (Ledoit-Wolf covariance); out of scope when either passes its threshold",
        "in_scope_threshold": float(np.quantile(softmax(logits)[:, IN_SCOPE], 1 - keep)),
        "distance_threshold": float(np.quantile(stats.distance(feats), keep)),
        "threshold_rule": f"each keeps {keep:.1%} of the selection part of validation in scope",
        "weights_file": SCOPE_WEIGHTS_FILE,
        "features_file": FEATURE_STATS_FILE,
    }


def _scope_rates(
    scope_network, features, check: ScopeCheck, x_report: np.ndarray, report_greys, config: TrainConfig, log: Log
):
    """Share judged out of scope on the report part, and on wrong renderings and non-radiographs made from it."""
    made, kinds = synthetic_out_of_scope(report_greys, replace(config.scope, synthetic_per_kind=300), config.seed + 5)
    x_made = preprocess_all(made, config.model.image_size)
    rates = {"validation (report part), in scope": _flagged(scope_network, features, check, x_report)}
    rates["rotated or inverted films (made from the report part)"] = _flagged(
        scope_network, features, check, x_made[kinds == 2]
    )
    not_radiographs = x_made[kinds == 3]
    rates["not chest radiographs: crops, noise, flat, gradients, shapes, text"] = _flagged(
        scope_network, features, check, not_radiographs
    )
    for name, rate in rates.items():
        log(f"  out of scope: {rate:.3f} of {name}")
    return rates


def _flagged(scope_network, features, check: ScopeCheck, x: np.ndarray) -> float:
    logits, feats = _scope_outputs(scope_network, features, x)
    return float(check.flags(logits, feats).mean())


def _external_figures(
    folder, scans, network, scope_network, features, check, calibration, threshold, config: TrainConfig, log: Log
):
    """The classifier on an outside population: all its report scans, PA films alone, and the scans the check keeps."""
    labels = np.array([s.label for s in scans])
    x = preprocess_all(load_images(scans), config.model.image_size)
    probability = calibrated_probability(_logits(network, x), *calibration)
    logits, feats = _scope_outputs(scope_network, features, x)
    flagged = check.flags(logits, feats)
    figures = {
        "name": Path(folder).name,
        "folder": str(folder),
        "all": _figures(labels, probability, threshold, config),
        "out_of_scope_rate": float(flagged.mean()),
    }
    views = _views(folder, scans)
    if views is not None and (views == "PA").sum() > 10 and len(np.unique(labels[views == "PA"])) == 2:
        figures["PA films"] = _figures(labels[views == "PA"], probability[views == "PA"], threshold, config)
    kept = ~flagged
    if kept.sum() >= 10 and len(np.unique(labels[kept])) == 2:
        figures["kept by the scope check"] = _figures(labels[kept], probability[kept], threshold, config)
    log(
        f"external {figures['name']}: AUC {figures['all']['auc']:.3f}, specificity {figures['all']['specificity']:.3f}; "
        f"{flagged.mean():.1%} judged out of scope"
    )
    return figures


def _views(folder: Path, scans: list[LabelledScan]) -> np.ndarray | None:
    """The view (PA, AP) of each scan from a manifest.csv with columns file,view beside the class folders, if any."""
    manifest = Path(folder) / "manifest.csv"
    if not manifest.exists():
        return None
    with open(manifest, newline="") as stream:
        view_of = {Path(record["file"]).name: record.get("view", "") for record in csv.DictReader(stream)}
    return np.array([view_of.get(s.path.name, "") for s in scans])
