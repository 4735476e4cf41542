"""The model at scoring time: weights loaded and checked against their card, batches of model inputs to probabilities."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from xscan.errors import WeightsError
from xscan.model.card import (
    WEIGHTS_FILE,
    ModelCard,
    calibrated_probability,
    default_weights_dir,
    model_config_from_card,
    read_card,
    sha256_of,
)
from xscan.model.inference import CompiledNetwork
from xscan.model.network import build_model, ensemble_features, fold_batch_norms

if TYPE_CHECKING:
    from xscan.model.scope import ScopeCheck
    from xscan.model.site_calibration import LoadedSite

MODEL_BATCH = 16  # model inputs per network call; see Scorer.probabilities


NO_SCOPE_CHECK = "this model card has no out-of-scope check: every readable image gets NORMAL or PNEUMONIA"


@dataclass(frozen=True)
class Assessment:
    """What the model says of a stack of model inputs."""

    probabilities: np.ndarray  # calibrated probability of pneumonia (the site's calibration, with one)
    scope: list[str]  # per input: empty in scope (or unchecked), else why it is out of scope, with the check's score


@runtime_checkable
class ScoresBatches(Protocol):
    """What the scoring pipeline (xscan.scoring.pipeline) needs of a model: a Scorer, or a stand-in that loads no network."""

    card: ModelCard

    @property
    def model_id(self) -> str: ...

    @property
    def threshold(self) -> float: ...

    def assess(self, model_inputs: np.ndarray) -> Assessment: ...


@dataclass
class Scorer:
    """A loaded model and its card: turns a batch of model inputs into calibrated probabilities and scope verdicts.

    With a scope check, one network call gives the ensemble's logit, its pooled features and the
    scope network's logits; with a site calibration, probabilities and the default threshold are
    the site's, and so is the model id written to each row.
    """

    card: ModelCard
    network: Any
    scope_network: Any = None
    scope_check: ScopeCheck | None = None
    site: LoadedSite | None = None
    notes: list[str] = field(default_factory=list)  # warnings for the user, e.g. no out-of-scope check
    threads: int = 1  # the network runs each batch on this many threads

    @cached_property
    def _network(self) -> CompiledNetwork:
        """The inference graph, compiled on first use: code that only needs the Keras network (training the
        scope check again) never pays for the conversion."""
        import keras

        inference = fold_batch_norms(self.network, model_config_from_card(self.card))
        outputs = [inference.output]
        if self.scope_check is not None:
            from xscan.model.scope import fold_scope_batch_norms, scope_config_from_card

            members = model_config_from_card(self.card).members
            scope_network = fold_scope_batch_norms(self.scope_network, scope_config_from_card(self.card), self.card.image_size)
            outputs += [ensemble_features(inference, members).output, scope_network(inference.inputs[0])]
        # One compiled graph of one fixed shape: no retracing, no Python per image.
        return CompiledNetwork(keras.Model(inference.inputs, outputs), MODEL_BATCH, self.threads)

    @property
    def model_id(self) -> str:
        """The id written to each row: the card's, with the site calibration's suffix when there is one."""
        return self.site.model_id() if self.site else self.card.model_id

    @property
    def threshold(self) -> float:
        """The default decision threshold: the site's, else the card's."""
        return self.site.calibration.threshold if self.site else self.card.threshold

    def assess(self, model_inputs: np.ndarray) -> Assessment:
        """Probabilities and scope verdicts for a stack of model inputs (see xscan.input.preprocess).

        The network always runs on chunks of exactly MODEL_BATCH inputs (the last one padded):
        the kernels, and so the last bits of a score, could otherwise depend on how many inputs
        share a call, and a resumed run must write the same numbers as an uninterrupted one.
        """
        count = len(model_inputs)
        padded = np.zeros((-(-count // MODEL_BATCH) * MODEL_BATCH, *model_inputs.shape[1:]), np.float32)
        padded[:count] = model_inputs
        chunks = [self._network.run(padded[i : i + MODEL_BATCH]) for i in range(0, len(padded), MODEL_BATCH)]
        logits = np.concatenate([chunk[0] for chunk in chunks]).reshape(-1)[:count].astype(np.float64)
        probabilities = calibrated_probability(logits, self.card.temperature, self.card.bias)
        if self.site:
            probabilities = self.site.calibration.probability(probabilities)
        scope = [""] * count
        if self.scope_check is not None:
            features = np.concatenate([chunk[1] for chunk in chunks])[:count]
            scope_logits = np.concatenate([chunk[2] for chunk in chunks])[:count]
            scope = self.scope_check.describe(scope_logits, features)
        return Assessment(probabilities, scope)

    def probabilities(self, model_inputs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of pneumonia for a stack of model inputs."""
        return self.assess(model_inputs).probabilities


def load_scorer(
    weights_dir: Path | None = None, threads: int = 1, *, scope_check: bool = True, site: LoadedSite | None = None
) -> Scorer:
    """Load weights and card from WEIGHTS_DIR (default: the bundled model), offline.

    With SCOPE_CHECK, the card's out-of-scope check is loaded too (a card without one gives a
    note instead); SITE is a site calibration already checked against the card's model id.

    THREADS is how many threads the network (and TensorFlow, and the BLAS behind numpy, which
    computes the scope check's feature distance) runs each batch on. One, because the scoring pipeline's
    decoding workers keep every core busy: more model threads only spin-wait and take turns with
    the decoders. OpenBLAS's idle threads, left at their default, spun for a whole core after
    each small matrix product and halved the scoring rate. 0 leaves the libraries' own defaults.
    """
    weights_dir = Path(weights_dir) if weights_dir else default_weights_dir()
    card = read_card(weights_dir)
    weights_path = model_files(weights_dir, card, scope_check=False)[0]  # the scope check's files: load_scope checks them
    _limit_threads(threads)
    # The card's config rebuilds the network exactly as trained; the file holds only its weights.
    network = build_model(model_config_from_card(card))
    try:
        network.load_weights(weights_path)
    except Exception as error:  # h5py and keras raise many types for a corrupt or mismatched file
        raise WeightsError(f"cannot load {weights_path}: {error}") from None
    if not scope_check:
        return Scorer(card, network, site=site, threads=threads)
    if not card.scope:
        return Scorer(card, network, site=site, notes=[NO_SCOPE_CHECK], threads=threads)
    from xscan.model.scope import ScopeFilesError, load_scope

    try:
        scope_network, check = load_scope(weights_dir, card)
    except (ScopeFilesError, OSError, ValueError, KeyError) as error:
        raise WeightsError(f"cannot load the out-of-scope check: {error}") from None
    return Scorer(card, network, scope_network, check, site, threads=threads)


def model_files(weights_dir: Path, card: ModelCard, *, scope_check: bool = True) -> list[Path]:
    """The files of WEIGHTS_DIR a Scorer of CARD loads besides the card: the weights, then the scope check's if it is used.

    Each is checked against the card first (present, readable, the card's sha256), without
    TensorFlow, so that a folder that would not load is a WeightsError before anything starts.
    """
    weights_path = weights_dir / WEIGHTS_FILE
    if not weights_path.exists():
        raise WeightsError(f"no weights file {weights_path}")
    try:
        actual = sha256_of(weights_path)
    except OSError as error:
        raise WeightsError(f"cannot read {weights_path}: {error.strerror or error}") from None
    if card.weights_sha256 and actual != card.weights_sha256:
        raise WeightsError(f"{weights_path} does not match its model card (sha256 {actual[:8]}, card says {card.weights_sha256[:8]})")
    if not (scope_check and card.scope):
        return [weights_path]
    from xscan.model.scope import ScopeFilesError, scope_files

    try:
        return [weights_path, *scope_files(weights_dir, card.scope).values()]
    except (ScopeFilesError, OSError, KeyError) as error:
        raise WeightsError(f"cannot load the out-of-scope check: {error}") from None


def _limit_threads(threads: int) -> None:
    import tensorflow as tf

    if threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")  # for the rest of the process, as TensorFlow's setting is
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TensorFlow already ran in this process (a second model, or tests): its threads stay as they are
