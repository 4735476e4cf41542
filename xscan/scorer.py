"""The model at scoring time: weights loaded and checked against their card, batches of model inputs to probabilities."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xscan.card import WEIGHTS_FILE, ModelCard, calibrated_probability, default_weights_dir, model_config_from_card, read_card, sha256_of
from xscan.errors import WeightsError
from xscan.model import build_model, fold_batch_norms

MODEL_BATCH = 16  # model inputs per network call; see Scorer.probabilities


@dataclass
class Scorer:
    """A loaded model and its card: turns a batch of model inputs into calibrated probabilities."""

    card: ModelCard
    network: Any

    def __post_init__(self) -> None:
        import tensorflow as tf

        # One traced graph of one fixed shape: no retracing, no Python per image.
        inference = fold_batch_norms(self.network, model_config_from_card(self.card))
        self._logits = tf.function(
            lambda batch: inference(batch, training=False),
            input_signature=[tf.TensorSpec([MODEL_BATCH, self.card.image_size, self.card.image_size, 1], tf.float32)],
        )

    def probabilities(self, model_inputs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of pneumonia for a stack of model inputs (see xscan.preprocess).

        The network always runs on chunks of exactly MODEL_BATCH inputs (the last one padded):
        the kernels, and so the last bits of a score, could otherwise depend on how many inputs
        share a call, and a resumed run must write the same numbers as an uninterrupted one.
        """
        count = len(model_inputs)
        padded = np.zeros((-(-count // MODEL_BATCH) * MODEL_BATCH, *model_inputs.shape[1:]), np.float32)
        padded[:count] = model_inputs
        chunks = [np.asarray(self._logits(padded[i : i + MODEL_BATCH])) for i in range(0, len(padded), MODEL_BATCH)]
        logits = np.concatenate(chunks).reshape(-1)[:count].astype(np.float64)
        return calibrated_probability(logits, self.card.temperature, self.card.bias)


def load_scorer(weights_dir: Path | None = None, threads: int = 1) -> Scorer:
    """Load weights and card from WEIGHTS_DIR (default: the bundled model), offline.

    THREADS is how many threads TensorFlow runs each batch on. One, because the scoring
    pipeline's decoding workers keep every core busy: more model threads only spin-wait and
    take turns with the decoders. 0 leaves TensorFlow's own default.
    """
    weights_dir = Path(weights_dir) if weights_dir else default_weights_dir()
    card = read_card(weights_dir)
    weights_path = weights_dir / WEIGHTS_FILE
    if not weights_path.exists():
        raise WeightsError(f"no weights file {weights_path}")
    try:
        actual = sha256_of(weights_path)
    except OSError as error:
        raise WeightsError(f"cannot read {weights_path}: {error.strerror or error}") from None
    if card.weights_sha256 and actual != card.weights_sha256:
        raise WeightsError(f"{weights_path} does not match its model card (sha256 {actual[:8]}, card says {card.weights_sha256[:8]})")
    _set_tensorflow_threads(threads)
    # The card's config rebuilds the network exactly as trained; the file holds only its weights.
    network = build_model(model_config_from_card(card))
    try:
        network.load_weights(weights_path)
    except Exception as error:  # h5py and keras raise many types for a corrupt or mismatched file
        raise WeightsError(f"cannot load {weights_path}: {error}") from None
    return Scorer(card, network)


def _set_tensorflow_threads(threads: int) -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TensorFlow already ran in this process (a second model, or tests): its threads stay as they are
