"""`xscan train --litert-only`: a weights folder's LiteRT file from its Keras weights and scope check; no training."""

from __future__ import annotations

from pathlib import Path

from xscan.errors import WeightsError
from xscan.model.card import ModelCard, load_network, read_card, write_card
from xscan.model.train_extra import require_train_extra
from xscan.training.config import Log


def convert_to_litert(weights_dir: Path, command: str, log: Log = print) -> ModelCard:
    """Write WEIGHTS_DIR's LiteRT file (the network scoring runs) from its Keras weights and scope check.

    For a weights folder written before `xscan train` wrote the LiteRT file itself: the weights,
    their sha256 and so the model id stay; the card gains the file's name and sha256, and COMMAND
    (the `xscan train ... --litert-only` that made it) beside the training command.

    Args:
        weights_dir: the weights folder.
        command: the command line, recorded as `training.litert_command`.
        log: where the line naming the file written goes.

    Returns:
        The card written.

    Raises:
        TrainExtraMissing: TensorFlow or Keras is not installed.
        WeightsError: the weights or the scope check do not load, or the card records no training.
    """
    from xscan.model.bundle import write_litert
    from xscan.model.scope import ScopeFilesError, load_scope_network

    require_train_extra("xscan train --litert-only")
    card = read_card(weights_dir)
    if card.training is None:
        raise WeightsError(f"the model card of {card.model_id} records no training run")
    network = load_network(weights_dir, card)
    try:
        scope_network = load_scope_network(weights_dir, card) if card.scope else None
    except (ScopeFilesError, OSError, KeyError) as error:
        raise WeightsError(f"cannot load the out-of-scope check: {error}") from None
    card.litert = write_litert(weights_dir, card, network, scope_network)
    card.training.litert_command = command
    write_card(weights_dir, card)
    log(f"wrote {weights_dir / card.litert.file} ({', '.join(card.litert.outputs)}; sha256 {card.litert.sha256[:8]})")
    return card
