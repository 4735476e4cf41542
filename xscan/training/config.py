"""The training recipe (`TrainConfig`), recorded whole in the model card; the split a trained model's card records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from xscan.model.card import ModelCard
from xscan.model.network import ModelConfig
from xscan.model.scope import ScopeConfig
from xscan.training.augment import AugmentConfig

Log = Callable[[str], None]  # where training's progress lines go (the CLI prints them; tests drop them)


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


def card_split(card: ModelCard, config: TrainConfig | None = None) -> TrainConfig:
    """CONFIG (default: the recipe) with the split a trained model's CARD records: its fractions and seed.

    Args:
        card: a card `xscan train` wrote (it has a training record).
        config: the recipe to change; the default recipe when None.

    Returns:
        CONFIG with the card's `val_fraction`, `report_fraction` and `seed`.

    Raises:
        WeightsError: the card records no training (it was made in memory).
    """
    from xscan.errors import WeightsError

    if card.training is None:
        raise WeightsError(f"the model card of {card.model_id} records no training run, so no split")
    recipe = card.training.recipe
    return replace(
        config or TrainConfig(),
        val_fraction=recipe["val_fraction"],
        report_fraction=recipe["report_fraction"],
        seed=recipe["seed"],
    )
