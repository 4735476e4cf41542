"""`xscan train`'s full mode: split a folder by patient, fit the ensemble, calibrate, measure, fit the scope check.

Each stage is its own module (parts, fit, operating_point, robustness, scope_fit, provenance);
this one runs them in order and builds the card. The other modes, which keep a trained model,
are in refit.py (the scope check, the drift reference) and convert.py (the LiteRT file).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path

from xscan.about import __version__
from xscan.model.bundle import save_bundle
from xscan.model.card import ModelCard, Preprocessing, TrainingRecord, calibrated_probability
from xscan.model.network import MODEL_NAME, build_model
from xscan.model.train_extra import require_train_extra
from xscan.stats.calibration import expected_calibration_error
from xscan.training.config import Log, TrainConfig
from xscan.training.dataset import find_labelled_scans, per_file_share
from xscan.training.fit import fit_classifier, logits, named_class_weights
from xscan.training.operating_point import choose_operating_point, figures
from xscan.training.parts import labels_of, load_parts, split_for_training
from xscan.training.provenance import intended_population, site_guidance, training_data
from xscan.training.refit import write_reference
from xscan.training.robustness import evaluate_shifts
from xscan.training.scope_fit import fit_scope_check


def train(
    data_dir: Path,
    out_dir: Path,
    config: TrainConfig,
    command: str,
    log: Log = print,
    external: Path | None = None,
    labels_file: Path | None = None,
    data_source: str | None = None,
) -> ModelCard:
    """Train on DATA_DIR, write weights, scope check and model card into OUT_DIR, return the card.

    Args:
        data_dir: a folder with NORMAL/ and PNEUMONIA/ (or the scans LABELS_FILE names).
        out_dir: the weights folder to write.
        config: the recipe.
        command: the `xscan train` command line, recorded in the card.
        log: where progress lines go.
        external: an optional labelled folder from outside the intended population (adult films of
            another hospital): part of its patients teach the scope check what "another population"
            looks like, the rest are scored for the card's out-of-population figures.
        labels_file: a CSV path,label[,patient] instead of class folders.
        data_source: where the scans came from, for the card; None: the Kermany attribution where
            the content hash is the Kermany training split's, else "not stated".

    Returns:
        The card written.

    Raises:
        TrainExtraMissing: TensorFlow or Keras is not installed.
        TrainingDataError: the folder cannot give a training set.
    """
    require_train_extra("xscan train")
    import keras

    keras.utils.set_random_seed(config.seed)
    started = dt.datetime.now(dt.UTC)
    scans = find_labelled_scans(data_dir, labels_file)
    if per_file_share(scans) > 0:
        log(
            f"warning: {per_file_share(scans):.0%} of the scans have no patient information (no DICOM PatientID, no "
            "patient column, no known file-name pattern): each is its own patient, so one patient's scans may fall on "
            "both sides of the split and flatter validation"
        )
    split = split_for_training(scans, config)
    data = training_data(data_dir, scans, split, external=external, labels_file=labels_file, data_source=data_source)
    log(
        f"{len(scans)} scans: {len(split.train)} for training, {len(split.select)} to select, "
        f"{len(split.report)} to report (split by patient); content sha256 {data.content_sha256[:8]}"
    )
    size = config.model.image_size
    y_train, y_select, y_report = (labels_of(part) for part in split)
    parts = load_parts(split, size)

    network = build_model(config.model)
    epochs = fit_classifier(network, parts.x_train, y_train, parts.x_select, y_select, config, log)

    select_logits = logits(network, parts.x_select)
    point = choose_operating_point(select_logits, y_select, config, log)
    selection = figures(y_select, point.probability(select_logits), point.threshold, config)
    report_logits = logits(network, parts.x_report)
    validation = figures(y_report, point.probability(report_logits), point.threshold, config)
    validation.ece_before_calibration = expected_calibration_error(calibrated_probability(report_logits, 1.0), y_report)
    log(
        f"report part: AUC {validation.auc:.4f}, sensitivity {validation.sensitivity:.3f}, "
        f"specificity {validation.specificity:.3f} at threshold {point.threshold:.3f} "
        f"(T={point.temperature:.2f}, bias {point.bias:.2f})"
    )
    robustness = evaluate_shifts(network, parts.report_greys, y_report, size, point)
    for row in robustness:
        log(
            f"  shift {row.shift:<18} AUC {row.auc:.4f}  specificity {row.specificity:.3f}  "
            f"sensitivity {row.sensitivity:.3f}"
        )
    scope = fit_scope_check(network, parts, external, point, config, log)

    card = ModelCard(
        name=MODEL_NAME,
        version=__version__,
        config=config.model,
        preprocessing=Preprocessing(image_size=size),
        temperature=point.temperature,
        bias=point.bias,
        threshold=point.threshold,
        threshold_rule=(
            f"highest threshold reaching sensitivity >= {config.target_sensitivity} on the selection part of validation"
        ),
        training=TrainingRecord(
            command=command,
            recipe=asdict(config),
            data=data,
            class_weights=named_class_weights(y_train),
            epochs_run=epochs.run,
            best_epoch=epochs.best,
            started=started.isoformat(timespec="seconds"),
            minutes=round((dt.datetime.now(dt.UTC) - started).total_seconds() / 60, 1),
            xscan_version=__version__,
            keras_version=keras.__version__,
        ),
        validation=validation,
        robustness=robustness,
        intended_population=intended_population(data),
        site_guidance=site_guidance(data),
        selection=selection,
        external=scope.external,
        scope=scope.save(out_dir, config),
    )
    save_bundle(network, card, out_dir, scope.network)
    # The drift reference is scored by the bundle as saved; it records its command (here the training's). The split,
    # the checked provenance and the validation films are those in hand: nothing is read, hashed or decoded again.
    return write_reference(out_dir, card, split, parts.select_greys + parts.report_greys, command)
