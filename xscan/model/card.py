"""The model card and the weights folder it travels in: what the weights are, how they were made; reading, writing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from xscan.errors import WeightsError
from xscan.model.classes import CLASS_NAMES
from xscan.model.network import ModelConfig, build_model
from xscan.stats.drift import Reference

WEIGHTS_FILE = "xscan-cnn.weights.h5"  # the Keras weights: training, Grad-CAM and the conversion read them
LITERT_FILE = "xscan-cnn.tflite"  # the network scoring runs, converted from them (xscan.model.bundle)
CARD_FILE = "model-card.json"


@dataclass
class Preprocessing:
    """How a scan becomes the model input: scoring reads it from the card, so it cannot preprocess otherwise."""

    image_size: int  # the square input's side in pixels
    function: str = "xscan.input.preprocess.preprocess"
    steps: str = "grey uint8 -> squash-resize (INTER_AREA) -> histogram equalization -> /255"


@dataclass
class Figures:
    """Metrics of a labelled part at the card's threshold (xscan.stats.metrics), with 95 % intervals."""

    n: int
    tp: int
    fp: int
    tn: int
    fn: int
    threshold: float
    sensitivity: float
    specificity: float
    precision: float
    npv: float
    f1: float
    accuracy: float
    balanced_accuracy: float
    auc: float  # NaN where the part has one class only
    average_precision: float
    brier: float
    ece: float
    intervals: dict[str, list[float]] = field(default_factory=dict)  # name -> [low, high]: Wilson, bootstrap for AUC
    ece_before_calibration: float | None = None  # the report part only: what Platt scaling corrected


@dataclass
class ShiftFigures:
    """The classifier on the report part after one acquisition shift (xscan.training.robustness)."""

    shift: str
    auc: float
    sensitivity: float
    specificity: float
    accuracy: float


@dataclass
class ExternalFigures:
    """A labelled set from outside the intended population: all its report scans, PA films alone, the scans kept."""

    name: str
    folder: str
    all: Figures
    out_of_scope_rate: float
    pa_films: Figures | None = None  # where a manifest.csv gives views and there are enough PA films
    kept_by_scope_check: Figures | None = None
    scans_teaching_the_scope_check: int = 0

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> ExternalFigures:
        """The section from the card's JSON, in today's shape or an earlier one."""
        # Cards before issue 29 named the subsets "PA films" and "kept by the scope check".
        renamed = {"PA films": "pa_films", "kept by the scope check": "kept_by_scope_check"}
        stored = {renamed.get(key, key): value for key, value in stored.items()}
        figures = {
            key: _build(Figures, stored[key]) for key in ("all", "pa_films", "kept_by_scope_check") if stored.get(key)
        }
        return _build(cls, {**stored, **figures})


@dataclass
class ScopeSection:
    """The out-of-scope check (xscan.model.scope): its thresholds, how they were chosen, its files and rates."""

    method: str
    in_scope_threshold: float  # a scan whose in-scope probability is below this is out of scope
    distance_threshold: float  # or whose feature distance from the training scans is above this
    threshold_rule: str
    weights_file: str  # the scope network's Keras weights (training, the conversion to LiteRT)
    features_file: str  # the feature statistics (scoring)
    rates: dict[str, float] = field(default_factory=dict)  # share judged out of scope, per kind of scan
    weights_sha256: str = ""
    features_sha256: str = ""


@dataclass
class LiteRTSection:
    """The LiteRT file scoring runs (xscan.model.bundle.write_litert), its outputs' names and widths in order."""

    file: str
    sha256: str
    batch: int
    outputs: dict[str, int]
    quantization: str = "none"
    tensorflow_version: str = ""


@dataclass
class DriftSection:
    """The drift check's reference (xscan.training.reference): per statistic, bins and each class's counts."""

    method: str
    source: str
    scans: dict[str, int]  # reference scans per class
    statistics: dict[str, Reference]

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> DriftSection:
        """The section from the card's JSON, each statistic's reference typed."""
        statistics = {name: Reference.from_dict(value) for name, value in stored["statistics"].items()}
        return _build(cls, {**stored, "statistics": statistics})

    def to_dict(self) -> dict[str, Any]:
        """The section as the card's JSON holds it."""
        return {**asdict(self), "statistics": {name: ref.to_dict() for name, ref in self.statistics.items()}}


@dataclass
class TrainingData:
    """What the model was trained on: the folder as given, what it held, and where it came from.

    `content_sha256` is sha256 over the sorted lines "relative path TAB label TAB file sha256" of
    every scan used (xscan.training.provenance): the same files with the same labels give the same
    hash wherever the folder lies. `source` is the data set's attribution where xscan knows it (the
    Kermany training split, by this hash) or the text `xscan train --data-source` was given.
    """

    source: str
    folder: str
    train: dict[str, int]  # scans per class in each part of the patient split
    selection: dict[str, int]
    report: dict[str, int]
    selection_patients: int
    report_patients: int
    external: str | None = None  # the --external folder, if any
    labels_file: str | None = None
    scans: dict[str, int] = field(default_factory=dict)  # every scan used, per class; empty in cards before issue 29
    patients: int = 0
    train_patients: int = 0
    content_sha256: str = ""


@dataclass
class TrainingRecord:
    """How the weights were made: the commands (each mode of `xscan train` records its own), recipe, data, run."""

    command: str
    recipe: dict[str, Any]  # TrainConfig's fields as trained (xscan.training.config reads them back, typed)
    data: TrainingData
    class_weights: dict[str, float] = field(default_factory=dict)  # per class name
    epochs_run: int = 0
    best_epoch: int = 0
    started: str = ""
    minutes: float = 0.0
    xscan_version: str = ""
    keras_version: str = ""
    scope_command: str = ""  # `xscan train ... --scope-only`, when the scope check was fitted again
    litert_command: str = ""  # `xscan train ... --litert-only`, when the LiteRT file was written again
    reference_command: str = ""  # `xscan train ... --reference-only` (or the training run that ended with it)

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> TrainingRecord:
        """The section from the card's JSON, in today's shape or an earlier one."""
        # Cards before issue 29 keyed the class weights by class index ("0", "1").
        weights = {
            CLASS_NAMES[int(name)] if name.isdigit() else name: float(weight)
            for name, weight in stored.get("class_weights", {}).items()
        }
        return _build(cls, {**stored, "data": _build(TrainingData, stored["data"]), "class_weights": weights})


@dataclass
class ModelCard:
    """Everything needed to use the weights exactly as they were trained, and what they scored.

    Read and written only here (`read_card`, `write_card`); every section is a dataclass. A card
    may be built with plain dicts for its sections (as the JSON has them): they become the dataclasses.
    """

    name: str
    version: str
    config: ModelConfig  # the network's shape: it is rebuilt from this
    preprocessing: Preprocessing
    temperature: float
    threshold: float
    threshold_rule: str
    weights_sha256: str = ""
    bias: float = field(kw_only=True)  # added to logit / temperature before the sigmoid (Platt scaling)
    training: TrainingRecord | None = None  # None: a card made in memory (tests, tools), never trained
    validation: Figures | None = None  # the report part of validation: it chose nothing
    robustness: list[ShiftFigures] = field(default_factory=list)
    intended_population: str = ""
    selection: Figures | None = None  # the part of validation that chose epoch, calibration, threshold
    external: list[ExternalFigures] = field(default_factory=list)  # labelled sets from outside the population
    scope: ScopeSection | None = None  # the out-of-scope check; None in older cards
    litert: LiteRTSection | None = None  # the LiteRT file scoring runs (xscan.model.bundle); None in older cards
    site_guidance: str = ""  # what a new site should expect of these figures, and what to run; empty in older cards
    drift: DriftSection | None = None  # the drift check's reference (xscan.training.reference); None in older cards

    def __post_init__(self) -> None:
        """Turn sections given as dicts into their dataclasses."""
        # Sections given as the JSON has them (a dict, or {} for "none" in older cards) become their dataclasses.
        if isinstance(self.config, dict):
            self.config = ModelConfig(**{**self.config, "widths": tuple(self.config["widths"])})
        self.preprocessing = _section(Preprocessing, self.preprocessing)
        self.training = _section(TrainingRecord, self.training)
        self.validation = _section(Figures, self.validation)
        self.selection = _section(Figures, self.selection)
        self.scope = _section(ScopeSection, self.scope)
        self.litert = _section(LiteRTSection, self.litert)
        self.drift = _section(DriftSection, self.drift)
        self.robustness = [_section(ShiftFigures, row) for row in self.robustness]
        self.external = [_section(ExternalFigures, figures) for figures in self.external]

    @property
    def model_id(self) -> str:
        """The model's identity in results files: name, version and the weights' hash prefix."""
        return f"{self.name}-{self.version}-{self.weights_sha256[:8]}"

    @property
    def image_size(self) -> int:
        """The square input's side in pixels."""
        return int(self.preprocessing.image_size)

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready values: each section a dict, None for a section the card does not have."""
        stored = asdict(replace(self, drift=None))
        return stored | {"drift": self.drift.to_dict() if self.drift else None}

    def to_json(self) -> str:
        """The card as the JSON file holds it."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """The card from its JSON file's text."""
        return cls(**json.loads(text))


def _section(cls: type[_Section], stored: Any) -> Any:
    """STORED as a CLS: itself when it is one already, None for a missing or empty section, else built from its dict."""
    if stored is None or isinstance(stored, cls):
        return stored
    if not isinstance(stored, dict):
        raise TypeError(f"a {cls.__name__} section is an object, not {type(stored).__name__}")
    if not stored:
        return None
    from_dict = getattr(cls, "from_dict", None)
    return from_dict(stored) if from_dict else _build(cls, stored)


def _build(cls: type[_Section], stored: dict[str, Any]) -> _Section:
    """A CLS from STORED's keys; a key CLS does not know is an error (TypeError), never silently dropped."""
    return cls(**stored)


_Section = TypeVar("_Section")


def calibrated_probability(logits: np.ndarray, temperature: float, bias: float = 0.0) -> np.ndarray:
    """Apply the card's calibration: sigmoid(logit / temperature + bias).

    Args:
        logits: The network's logits.
        temperature: The card's temperature.
        bias: The card's bias.

    Returns:
        The probabilities of pneumonia.
    """
    # numpy's own logistic, not scipy's expit (the same numbers): importing scipy.special cost scoring a quarter
    # second of start-up.
    with np.errstate(over="ignore"):  # exp overflows to inf far below zero: the probability is then 0, as expit gives
        return 1.0 / (1.0 + np.exp(-(np.asarray(logits, np.float64) / temperature + bias)))


def model_config_from_card(card: ModelCard) -> ModelConfig:
    """The network's shape as the card records it."""
    return card.config


def default_weights_dir() -> Path:
    """The bundled weights: `weights/` of the source tree, or the copy installed in the package."""
    package = Path(__file__).parents[1]
    packaged = package / "weights"
    return packaged if (packaged / CARD_FILE).exists() else package.parent / "weights"


def read_card(weights_dir: Path) -> ModelCard:
    """Read the model card of a weights folder, in today's shape or any earlier one.

    Sections may be missing or keyed as they were.

    Args:
        weights_dir: The weights folder.

    Returns:
        The card.

    Raises:
        WeightsError: The card is missing, unreadable, or not a model card.
    """
    card_path = weights_dir / CARD_FILE
    try:
        return ModelCard.from_json(card_path.read_text())
    except OSError as error:
        raise WeightsError(f"cannot read model card {card_path}: {error.strerror or error}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise WeightsError(f"model card {card_path} is not valid: {error!r}") from None


def write_card(weights_dir: Path, card: ModelCard) -> None:
    """Write a card into a weights folder, replacing the card there whole: the one place a model card is written.

    Args:
        weights_dir: The weights folder.
        card: The card.
    """
    path = weights_dir / CARD_FILE
    temporary = path.with_name(f".{CARD_FILE}.tmp")
    temporary.write_text(card.to_json())
    temporary.replace(path)  # a reader never sees half a card


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_network(weights_dir: Path, card: ModelCard) -> Any:
    """Rebuild the Keras network from the card's config and load the weights file's weights (checked).

    For training, Grad-CAM and the conversion to LiteRT: this imports TensorFlow, scoring never does.

    Args:
        weights_dir: The weights folder.
        card: Its model card.

    Returns:
        The Keras network.

    Raises:
        WeightsError: The weights file is missing, unreadable, not the card's, or cannot be loaded.
    """
    from xscan.model.native_notes import import_keras_quietly

    weights_path = checked_file(weights_dir / WEIGHTS_FILE, card.weights_sha256, "weights file")
    import_keras_quietly()
    network = build_model(model_config_from_card(card))
    try:
        network.load_weights(weights_path)
    except Exception as error:  # h5py and keras raise many types for a corrupt or mismatched file
        raise WeightsError(f"cannot load {weights_path}: {error}") from None
    return network


def checked_file(path: Path, sha256: str, what: str) -> Path:
    """Check a file is present, readable and (when the card gives one) of the card's hash.

    Args:
        path: The file.
        sha256: The card's hash of it; empty: not checked.
        what: What the file is, for the error message.

    Returns:
        The path.

    Raises:
        WeightsError: The file is missing, unreadable, or of another hash.
    """
    if not path.exists():
        raise WeightsError(f"no {what} {path}")
    try:
        actual = sha256_of(path)
    except OSError as error:
        raise WeightsError(f"cannot read {path}: {error.strerror or error}") from None
    if sha256 and actual != sha256:
        raise WeightsError(f"{path} does not match its model card (sha256 {actual[:8]}, card says {sha256[:8]})")
    return path
