"""The model at scoring time: the LiteRT file loaded and checked against its card, model inputs to probabilities."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from xscan.errors import WeightsError, one_line
from xscan.model.card import (
    LITERT_FILE,
    ModelCard,
    calibrated_probability,
    checked_file,
    default_weights_dir,
    load_network,
    read_card,
)
from xscan.model.inference import CompiledNetwork
from xscan.model.network import CAM

if TYPE_CHECKING:
    from xscan.model.scope import ScopeCheck
    from xscan.model.site_calibration import LoadedSite

MODEL_BATCH = (
    16  # model inputs per network call (the LiteRT file's batch, written by xscan.model.bundle); see Scorer.assess
)


NO_SCOPE_CHECK = "this model card has no out-of-scope check: every readable image gets NORMAL or PNEUMONIA"


@dataclass(frozen=True)
class Assessment:
    """What the model says of a stack of model inputs."""

    probabilities: np.ndarray  # calibrated probability of pneumonia (the site's calibration, with one)
    scope: list[str]  # per input: empty in scope (or unchecked), else why it is out of scope, with the check's score
    scope_scores: np.ndarray | None = (
        None  # per input: the scope network's out-of-scope probability; None without a scope check
    )
    distances: np.ndarray | None = (
        None  # per input: the feature distance from the training scans; None without a scope check
    )
    cams: np.ndarray | None = None  # per input, when asked for: the class activation map (cells x cells, logit units)

    def measures(self) -> list[dict[str, str]]:
        """Per input, the scope check's figures as cells (feature_distance, scope_score); empty without a check."""
        if self.scope_scores is None or self.distances is None:
            return [{} for _ in self.scope]
        return [
            {"feature_distance": f"{distance:.3f}", "scope_score": f"{score:.6f}"}
            for distance, score in zip(self.distances, self.scope_scores, strict=True)
        ]


@runtime_checkable
class ScoresBatches(Protocol):
    """What the scoring pipeline needs of a model: a Scorer, or a stand-in loading no network."""

    card: ModelCard

    @property
    def model_id(self) -> str:
        """Give the id written to each row."""

    @property
    def threshold(self) -> float:
        """Give the default decision threshold."""

    def assess(self, model_inputs: np.ndarray) -> Assessment:
        """Give the probabilities and scope verdicts of a batch of model inputs."""


@dataclass
class Scorer:
    """A loaded model and its card: turns a batch of model inputs into calibrated probabilities and scope verdicts.

    The network is the card's LiteRT file, run by LiteRT alone: scoring never imports TensorFlow.
    With a scope check, one network call gives the ensemble's logit, its pooled features and the
    scope network's logits; with a site calibration, probabilities and the default threshold are
    the site's, and so is the model id written to each row.
    """

    card: ModelCard
    flatbuffer: bytes  # the LiteRT file's content, checked against the card
    weights_dir: Path | None = None  # where the Keras weights are, for `network`
    scope_check: ScopeCheck | None = None
    site: LoadedSite | None = None
    notes: list[str] = field(default_factory=list)  # warnings for the user, e.g. no out-of-scope check
    threads: int = (
        1  # the network, and the BLAS behind the scope check's feature distance, run each batch on this many threads
    )
    keras_network: Any = field(default=None, repr=False)  # the Keras network when at hand; else `network` loads it

    @cached_property
    def _network(self) -> CompiledNetwork:
        """The interpreter, started on first use, so that a Scorer travels (to Ray actors) as bytes."""
        return CompiledNetwork(self.flatbuffer, self.card.litert.outputs, self.threads)

    @property
    def network(self) -> Any:
        """The Keras network of the LiteRT file (training, the Grad-CAM reference); imports TensorFlow."""
        if self.keras_network is None:
            if self.weights_dir is None:
                raise WeightsError(
                    "this scorer was loaded without its weights folder: the Keras network is not at hand"
                )
            self.keras_network = load_network(self.weights_dir, self.card)
        return self.keras_network

    @property
    def model_id(self) -> str:
        """The id written to each row: the card's, with the site calibration's suffix when there is one."""
        return self.site.model_id() if self.site else self.card.model_id

    @property
    def threshold(self) -> float:
        """The default decision threshold: the site's, else the card's."""
        return self.site.calibration.threshold if self.site else self.card.threshold

    def assess(self, model_inputs: np.ndarray, *, cams: bool = False) -> Assessment:
        """Give probabilities and scope verdicts for a stack of model inputs (see xscan.input.preprocess).

        The network always runs on chunks of exactly MODEL_BATCH inputs (the last one padded):
        the kernels, and so the last bits of a score, could otherwise depend on how many inputs
        share a call, and a resumed run must write the same numbers as an uninterrupted one.

        Args:
            model_inputs: The preprocessed inputs.
            cams: Whether to return each input's class activation map too (`Assessment.cams`): the
                network always computes it (a few thousand multiplications a scan), it is only
                copied out when asked for.

        Returns:
            The assessment of every input.

        Raises:
            WeightsError: With cams, a LiteRT file written before it had that output; says how to rewrite it.
        """
        if cams and CAM not in self._network.outputs:
            raise WeightsError(
                "this model's LiteRT file has no heatmap output (it was written before there was one); "
                f"write it again from its weights with: {litert_command(self.weights_dir or Path('WEIGHTS'))}"
            )
        count, batch = len(model_inputs), self._network.batch
        padded = np.zeros((-(-count // batch) * batch, *model_inputs.shape[1:]), np.float32)
        padded[:count] = model_inputs
        chunks = [self._network.run(padded[i : i + batch]) for i in range(0, len(padded), batch)]

        def joined(name: str) -> np.ndarray:
            return np.concatenate([chunk[name] for chunk in chunks])[:count]

        logits = joined("logit").reshape(-1).astype(np.float64)
        probabilities = calibrated_probability(logits, self.card.temperature, self.card.bias)
        if self.site:
            probabilities = self.site.calibration.probability(probabilities)
        maps = None
        if cams:
            cells = joined(CAM)
            side = round(cells.shape[1] ** 0.5)
            maps = cells.reshape(count, side, side).astype(np.float32)
        if self.scope_check is None:
            return Assessment(probabilities, [""] * count, cams=maps)
        with _blas_threads(self.threads):
            verdicts = self.scope_check.judge(joined("scope_logits"), joined("features"))
        return Assessment(
            probabilities,
            [self.scope_check.cell(verdict) for verdict in verdicts],
            np.array([verdict.score for verdict in verdicts]),
            np.array([verdict.distance for verdict in verdicts]),
            maps,
        )

    def probabilities(self, model_inputs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of pneumonia for a stack of model inputs."""
        return self.assess(model_inputs).probabilities


def load_scorer(
    weights_dir: Path | None = None, threads: int = 1, *, scope_check: bool = True, site: LoadedSite | None = None
) -> Scorer:
    """Load the LiteRT file and card of a model, offline, without TensorFlow.

    The default of one thread is because the scoring pipeline's decoding workers keep every core
    busy: more model threads only spin-wait and take turns with the decoders. OpenBLAS's idle
    threads, left at their default, spun for a whole core after each small matrix product and
    halved the scoring rate.

    Args:
        weights_dir: The model's folder (None: the bundled model).
        threads: How many threads the network (and the BLAS behind numpy, which computes the scope
            check's feature distance) runs each batch on, within each call only; 0 leaves the
            libraries' own defaults.
        scope_check: Whether to load the card's out-of-scope check too (a card without one gives a
            note instead).
        site: A site calibration already checked against the card's model id.

    Returns:
        The loaded scorer; its network is started, so a file that does not load fails now.

    Raises:
        WeightsError: The folder's files are missing, differ from the card, or do not load.
    """
    weights_dir = Path(weights_dir) if weights_dir else default_weights_dir()
    card = read_card(weights_dir)
    files = model_files(weights_dir, card, scope_check=scope_check)
    try:
        flatbuffer = files[0].read_bytes()
    except OSError as error:
        raise WeightsError(f"cannot read {files[0]}: {error.strerror or error}") from None
    if not scope_check:
        scorer = Scorer(card, flatbuffer, weights_dir, site=site, threads=threads)
    elif not card.scope:
        scorer = Scorer(card, flatbuffer, weights_dir, site=site, notes=[NO_SCOPE_CHECK], threads=threads)
    else:
        from xscan.model.scope import ScopeFilesError, load_scope_check

        try:
            check = load_scope_check(weights_dir, card)
        except (ScopeFilesError, OSError, ValueError, KeyError) as error:
            raise WeightsError(f"cannot load the out-of-scope check: {error}") from None
        scorer = Scorer(card, flatbuffer, weights_dir, check, site, threads=threads)
    try:
        scorer._network  # noqa: B018  (started here, so that a file that matches its card but does not load fails before any row)
    except (ValueError, RuntimeError) as error:
        raise WeightsError(f"cannot load {files[0]}: {one_line(error)}") from None
    return scorer


def litert_command(weights_dir: Path) -> str:
    """Give the command that writes the LiteRT file for a card that has none.

    See xscan.training.convert.convert_to_litert.

    Args:
        weights_dir: The folder of the card.

    Returns:
        The `xscan train ... --litert-only` command line.
    """
    return f"xscan train DATA --out {weights_dir} --litert-only"


def model_files(weights_dir: Path, card: ModelCard, *, scope_check: bool = True) -> list[Path]:
    """Give the files a Scorer of a card loads: the LiteRT file, then the scope statistics if used.

    Each is checked against the card first (present, readable, the card's sha256), so that a
    folder that would not load fails before anything starts. The Keras weights are not among
    them: scoring does not read them.

    Args:
        weights_dir: The model's folder.
        card: Its card.
        scope_check: Whether the scope statistics are used.

    Returns:
        The files' paths.

    Raises:
        WeightsError: The card names no LiteRT file, or a file is missing, unreadable or not the card's.
    """
    if not card.litert:
        raise WeightsError(
            f"the model card in {weights_dir} names no LiteRT file ({LITERT_FILE}), the network scoring runs "
            f"(the folder was written before there was one); write it from its weights with: "
            f"{litert_command(weights_dir)}"
        )
    litert_path = checked_file(weights_dir / card.litert.file, card.litert.sha256, "LiteRT file")
    if not (scope_check and card.scope):
        return [litert_path]
    from xscan.model.scope import ScopeFilesError, scope_files

    try:
        return [litert_path, *scope_files(weights_dir, card.scope, ("features",)).values()]
    except (ScopeFilesError, OSError, KeyError) as error:
        raise WeightsError(f"cannot load the out-of-scope check: {error}") from None


@contextmanager
def _blas_threads(threads: int) -> Iterator[None]:
    """Within, BLAS runs on THREADS threads (0: as it was); after, as it was before."""
    if not threads:
        yield
        return
    with _blas_controller().limit(limits=threads, user_api="blas"):
        yield


@cache
def _blas_controller() -> Any:
    # Finding the loaded BLAS libraries walks the process's shared objects: once, not at every batch.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()
