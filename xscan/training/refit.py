"""`xscan train`'s refit modes, which keep the trained classifier: the out-of-scope check, the drift reference, again.

Both read the folder the model was trained on, split it as the card records, and refuse another
folder (by content hash, or by the split's counts for a card from before the hash); both record
the data provenance and their own command in the card.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from xscan.model.card import (
    ModelCard,
    TrainingRecord,
    load_network,
    model_config_from_card,
    read_card,
    write_card,
)
from xscan.model.train_extra import require_train_extra
from xscan.training.config import Log, TrainConfig, card_split
from xscan.training.dataset import find_labelled_scans
from xscan.training.operating_point import OperatingPoint
from xscan.training.parts import Split, load_images, load_parts, split_for_training
from xscan.training.provenance import (
    KERMANY_SOURCE,
    NOT_STATED,
    check_same_data,
    intended_population,
    is_kermany,
    site_guidance,
    training_data,
)
from xscan.training.reference import store_reference
from xscan.training.scope_fit import fit_scope_check


def refit_scope(
    data_dir: Path,
    weights_dir: Path,
    config: TrainConfig,
    command: str,
    log: Log = print,
    external: Path | None = None,
    labels_file: Path | None = None,
    data_source: str | None = None,
) -> ModelCard:
    """Fit the out-of-scope check again for the model in WEIGHTS_DIR, with CONFIG's scope recipe; the classifier stays.

    The split is the card's own (its fractions and seed), so the check is fitted, thresholded and
    reported on the same three parts the classifier was. The LiteRT file is written again with the
    new scope head, and the drift reference made again (the scope score is one of its statistics).

    Args:
        data_dir: the folder the model was trained on.
        weights_dir: the weights folder to update.
        config: the recipe whose `scope` part is used (the split and network shape are the card's).
        command: the `xscan train ... --scope-only` command line, recorded in the card.
        log: where progress lines go.
        external: an optional labelled folder from outside the intended population.
        labels_file: the labels file the model was trained with, if any.
        data_source: where the scans came from; None keeps what the content hash or the card says.

    Returns:
        The card written.

    Raises:
        TrainExtraMissing: TensorFlow or Keras is not installed.
        TrainingDataError: DATA_DIR is not the data the model was trained on.
    """
    from xscan.model.bundle import write_litert

    require_train_extra("xscan train --scope-only")
    import keras

    keras.utils.set_random_seed(config.seed)
    card = read_card(weights_dir)
    config = replace(card_split(card, config), model=model_config_from_card(card))  # the trained model's shape
    split = _checked_split(card, data_dir, config, labels_file, data_source, external)  # this check's --external
    network = load_network(weights_dir, card)
    parts = load_parts(split, card.image_size)
    point = OperatingPoint(card.temperature, card.bias, card.threshold)
    scope = fit_scope_check(network, parts, external, point, config, log)
    card.scope = scope.save(weights_dir, config)
    card.external = scope.external
    training = _training(card)
    training.recipe["scope"] = asdict(config.scope)
    training.scope_command = command
    card.litert = write_litert(weights_dir, card, network, scope.network)
    write_card(weights_dir, card)
    # The drift reference is scored by the bundle as just written; the split and greys are those in hand.
    return write_reference(weights_dir, card, split, parts.select_greys + parts.report_greys, command)


def refit_reference(
    data_dir: Path,
    weights_dir: Path,
    command: str,
    labels_file: Path | None = None,
    data_source: str | None = None,
) -> ModelCard:
    """Compute the drift reference of the model in WEIGHTS_DIR again, on the validation patients of the card's split.

    Re-runnable, and needs no TensorFlow: the model stays; the card's `drift` section, its data
    provenance (`training.data`), the population and site guidance that follow from it, and
    `training.reference_command` change. `train` and `refit_scope` end with `write_reference`, its
    core, on the split and films they already hold.

    Args:
        data_dir: the folder the model was trained on.
        weights_dir: the weights folder to update.
        command: the command line, recorded as `training.reference_command`.
        labels_file: the labels file the model was trained with, if any.
        data_source: where the scans came from; None keeps what the content hash or the card says.

    Returns:
        The card written.

    Raises:
        TrainingDataError: DATA_DIR is not the data the model was trained on.
    """
    card = read_card(weights_dir)
    training = _training(card)
    external = Path(training.data.external) if training.data.external else None  # the scope check's, kept
    split = _checked_split(card, data_dir, card_split(card), labels_file, data_source, external)
    return write_reference(weights_dir, card, split, load_images(split.select + split.report), command)


def write_reference(
    weights_dir: Path, card: ModelCard, split: Split, greys: Sequence[np.ndarray], command: str
) -> ModelCard:
    """Put the drift reference of the model in WEIGHTS_DIR into CARD, record COMMAND, and write the card.

    The bundle in WEIGHTS_DIR (its card on disk included) must be the model as saved: the
    reference is scored by it. CARD's data provenance must already be SPLIT's folder's.

    Args:
        weights_dir: the weights folder to update.
        card: the model's card, with a training record.
        split: the card's split of the folder; its selection and report parts are the reference.
        greys: the decoded films of the selection part, then of the report part, in the split's order.
        command: the command line, recorded as `training.reference_command`.

    Returns:
        The card written.

    Raises:
        WeightsError: the card records no training run.
    """
    training = _training(card)
    store_reference(weights_dir, card, split.select + split.report, greys)
    training.reference_command = command
    write_card(weights_dir, card)
    return card


def _checked_split(
    card: ModelCard,
    data_dir: Path,
    config: TrainConfig,
    labels_file: Path | None,
    data_source: str | None,
    external: Path | None,
) -> Split:
    """DATA_DIR's split as the card records it, after checking it is the card's data; the card's provenance updated."""
    training = _training(card)
    scans = find_labelled_scans(data_dir, labels_file)
    split = split_for_training(scans, config)
    found = training_data(
        data_dir,
        scans,
        split,
        external=external,
        labels_file=labels_file,
        data_source=data_source,
    )
    check_same_data(training.data, found)
    if data_source is None and not is_kermany(found) and training.data.source not in (KERMANY_SOURCE, NOT_STATED):
        found = replace(found, source=training.data.source)  # a --data-source given at training outlives refits
    training.data = found
    card.intended_population = intended_population(found)
    card.site_guidance = site_guidance(found)
    return split


def _training(card: ModelCard) -> TrainingRecord:
    from xscan.errors import WeightsError

    if card.training is None:
        raise WeightsError(f"the model card of {card.model_id} records no training run: nothing to refit")
    return card.training
