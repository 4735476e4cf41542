"""The stand-in scorer: the bundled model's card without its network, for tests whose point is not the model.

Nothing it does loads TensorFlow or LiteRT, so a run with it takes a second; everything else a run
does (walk, decode, resume, lock, journal, writer, the command line) is the real thing. It is a
`xscan.model.scorer.ScoresBatches`, as the real Scorer is (tests/test_suite_hygiene.py checks both).
"""

from __future__ import annotations

import numpy as np

from xscan.model.card import default_weights_dir, read_card
from xscan.model.scorer import Assessment


class StandIn:
    """The bundled card; the mean of each model input, clipped to 0..1, as its probability; everything in scope."""

    card = read_card(default_weights_dir())
    model_id, threshold = card.model_id, card.threshold
    notes: list[str] = []
    site = None  # what score_folder asks of a scorer besides ScoresBatches: no site calibration,
    scope_check = None  # and no out-of-scope check

    def assess(self, model_inputs: np.ndarray) -> Assessment:
        probabilities = np.clip(model_inputs.reshape(len(model_inputs), -1).mean(axis=1), 0.0, 1.0)
        return Assessment(probabilities, [""] * len(model_inputs))


def stand_in_loader(weights, **options) -> StandIn:
    """In place of xscan.scoring.run.load_scorer."""
    return StandIn()
