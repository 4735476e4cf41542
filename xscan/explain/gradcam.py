"""Where the model looked: Grad-CAM of the ensemble on each member's last conv stage, and the overlays `xscan explain` writes.

The maps come from the scorer's own network (batch norms unfolded) through TensorFlow's gradient
tape: there is no second model to keep in step. docs/explain.md says why Grad-CAM and what the
maps can and cannot show.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xscan.errors import ScanError, UsageError
from xscan.explain.overlay import Grid, annotate, blend, colour_scale, display_scan, heat_on_scan, write_png
from xscan.input.walk import find_scans
from xscan.model.card import model_config_from_card
from xscan.model.network import ModelConfig, build_model, member_logit_layer
from xscan.model.scorer import MODEL_BATCH, Scorer
from xscan.scoring.cpus import usable_cpus
from xscan.scoring.pipeline import LoadedScan, loaded_batches
from xscan.scoring.results import COLUMNS, FINGERPRINT_COLUMNS, Row
from xscan.scoring.resume import fingerprint

OVERLAY_COLUMN = "overlay"  # explain.csv: the PNG's path, relative to the output folder
EXPLAIN_CSV = "explain.csv"
EXPLAIN_COLUMNS = (
    *COLUMNS,
    *FINGERPRINT_COLUMNS,
    OVERLAY_COLUMN,
)  # score's columns but resolved_path, then the overlay
LONG_SIDE = 512  # pixels on the longer side of an overlay, unless asked otherwise


def last_stage_layer(config: ModelConfig, member: int) -> str:
    """The name of MEMBER's last convolutional feature map (after its ReLU): the layer Grad-CAM explains."""
    stage = len(config.widths) - 1
    conv = "b" if stage >= config.extra_convs_from_stage else "a"
    return f"m{member}_s{stage}_{conv}_relu"


def grid_of(network: Any, config: ModelConfig) -> Grid:
    """Where the last stage's cells sit on the input, from member 0's convolutions (all members share the shape).

    A stride-2 'same' convolution on an even side pads one pixel at the end only, so each such
    stage moves the cell centres half an input pixel right and down: 15.5 pixels in all at
    160 px, half a 32-pixel cell. Maps placed on an even grid would be off by that much.
    """
    import keras

    convs = [
        layer for layer in network.layers if isinstance(layer, keras.layers.Conv2D) and layer.name.startswith("m0_")
    ]
    side, field, jump, steps = config.image_size, 1, 1, []
    for conv in convs:
        kernel, stride = conv.kernel_size[0], conv.strides[0]
        if conv.padding == "same":
            out = -(-side // stride)
            before = max((out - 1) * stride + kernel - side, 0) // 2
        else:
            out, before = (side - kernel) // stride + 1, 0
        steps.append((stride, (kernel - 1) / 2 - before))  # output pixel c is centred on input pixel stride * c + shift
        field += (kernel - 1) * jump
        jump *= stride
        side = out
    stride, offset = 1, 0.0
    for step, shift in reversed(steps):
        stride, offset = stride * step, step * offset + shift
    return Grid(cells=side, stride=stride, offset=offset, field=field)


class GradCam:
    """Grad-CAM (Selvaraju et al. 2017) of the ensemble's logit on every member's last conv stage.

    The ensemble's logit is the mean of the members' logits; its gradient reaches each member's
    feature maps already divided by the member count, so the members' maps are summed, which is
    the mean of each member's own Grad-CAM: combined the way the logits are. Behind each map
    there is only global average pooling and one dense layer, so a cell's value is exactly its
    share of the logit: the cells add up to the ensemble's logit less the mean dense bias.
    """

    def __init__(self, network: Any, config: ModelConfig) -> None:
        import keras
        import tensorflow as tf

        features = [network.get_layer(last_stage_layer(config, member)).output for member in range(config.members)]
        probe = keras.Model(network.inputs, [*features, network.output])

        def maps(batch: Any) -> Any:
            with tf.GradientTape() as tape:
                *activations, logit = probe(batch, training=False)
                total = tf.reduce_sum(logit)  # scans do not interact at inference: each gets its own gradient
            gradients = tape.gradient(total, activations)
            return tf.add_n(
                [
                    tf.reduce_sum(tf.reduce_mean(gradient, axis=(1, 2), keepdims=True) * activation, axis=-1)
                    for gradient, activation in zip(gradients, activations, strict=True)
                ]
            )

        side = config.image_size
        self._maps = tf.function(maps, input_signature=[tf.TensorSpec([MODEL_BATCH, side, side, 1], tf.float32)])
        self.grid = grid_of(network, config)
        self.image_size = side

    def cells(self, scans: np.ndarray) -> np.ndarray:
        """Signed maps, shape (scans, cells, cells), in logit units: > 0 where the cell raised the pneumonia score."""
        count = len(scans)
        padded = np.zeros((-(-count // MODEL_BATCH) * MODEL_BATCH, *scans.shape[1:]), np.float32)
        padded[:count] = scans
        chunks = [np.asarray(self._maps(padded[i : i + MODEL_BATCH])) for i in range(0, len(padded), MODEL_BATCH)]
        return np.concatenate(chunks)[:count]


@dataclass(frozen=True)
class Explanation:
    """One scan: its probability as `xscan score` computes it, and its signed Grad-CAM map; or why it failed."""

    path: Path
    probability: float | None
    cells: np.ndarray | None  # GradCam.cells of this scan
    error: str = ""


class Explainer:
    """Probabilities and heatmaps for files, from one loaded model."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.gradcam = GradCam(scorer.network, model_config_from_card(scorer.card))

    def explain(self, paths: Iterable[Path], workers: int | None = None) -> Iterator[list[Explanation]]:
        """Explanations of PATHS in order, a batch at a time; files are decoded on WORKERS threads as in scoring."""
        for batch in loaded_batches(paths, self.scorer.card.image_size, MODEL_BATCH, workers or usable_cpus()):
            yield self._explain_batch(batch)

    def _explain_batch(self, batch: list[LoadedScan]) -> list[Explanation]:
        scans = [entry.model_input for entry in batch if entry.model_input is not None]
        if not scans:
            return [Explanation(entry.path, None, None, entry.error) for entry in batch]
        stack = np.stack(scans)
        # The probability from the scorer's own (folded) network: exactly the number `xscan score` writes.
        scored = iter(zip(self.scorer.probabilities(stack), self.gradcam.cells(stack), strict=True))
        explained = []
        for entry in batch:
            if entry.model_input is None:
                explained.append(Explanation(entry.path, None, None, entry.error))
            else:
                probability, cells = next(scored)
                explained.append(Explanation(entry.path, float(probability), cells))
        return explained

    def heat(self, explanation: Explanation, width: int, height: int) -> np.ndarray:
        """The map's positive part (Grad-CAM's ReLU) on a WIDTH x HEIGHT picture of the whole scan."""
        positive = np.maximum(explanation.cells, 0.0)
        return heat_on_scan(positive, self.gradcam.grid, self.gradcam.image_size, width, height)

    def picture(self, explanation: Explanation, long_side: int) -> tuple[np.ndarray, np.ndarray]:
        """The scan as uint8 grey with LONG_SIDE pixels on its longer side, and its heat on the same pixels."""
        grey = display_scan(explanation.path, long_side)
        return grey, self.heat(explanation, grey.shape[1], grey.shape[0])

    def caption(self, explanation: Explanation, threshold: float) -> list[str]:
        """The lines under an overlay: label, probability and threshold; what the map is; the model."""
        row = Row(str(explanation.path), explanation.probability, threshold, self.scorer.card.model_id)
        return [
            f"{row.label}: probability of pneumonia {explanation.probability:.6f} (threshold {threshold:.4f})",
            "Grad-CAM: where the pneumonia score rose; bar in logit per cell",
            f"model {row.model}; aids a physician, not a diagnostic device",
        ]

    def overlay(self, explanation: Explanation, long_side: int, threshold: float) -> np.ndarray:
        """The full overlay: scan, heat, colour bar and caption."""
        grey, heat = self.picture(explanation, long_side)
        scale = colour_scale(heat)
        return annotate(blend(grey, heat, scale), scale, self.caption(explanation, threshold))


class OverlayClashError(UsageError, ValueError):
    """Two scans would write the same overlay file."""


def overlay_plan(inputs: Sequence[Path]) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Each scan to explain with its overlay's path relative to the output folder, and what the walks skipped.

    A folder is walked as `xscan score` walks it and a scan below it gets `<path below the
    folder>.png`; a file given by name gets `<its name>.png`, whatever its extension. Two scans
    that would share an overlay are an OverlayClashError, before any work.
    """
    plan: list[tuple[Path, Path]] = []
    skipped: list[tuple[Path, str]] = []
    for given in inputs:
        if given.is_dir():
            found = find_scans(given)
            skipped += found.not_scanned
            plan += [(scan, scan.relative_to(given).with_name(scan.name + ".png")) for scan in found.scans]
        else:
            plan.append((given, Path(given.name + ".png")))
    owners: dict[Path, Path] = {}
    for scan, overlay in plan:
        if overlay in owners:
            raise OverlayClashError(
                f"{owners[overlay]} and {scan} would both be drawn to {overlay}; explain them into separate folders"
            )
        owners[overlay] = scan
    return plan, skipped


def write_overlays(
    plan: Sequence[tuple[Path, Path]],
    explainer: Explainer,
    folder: Path,
    long_side: int,
    threshold: float,
    workers: int | None = None,
) -> Iterator[list[Row]]:
    """Draw each planned scan's overlay into FOLDER and yield its rows a batch at a time, as `xscan score` would.

    A row has score's columns, then OVERLAY_COLUMN. A file that cannot be read is an error row and
    the run goes on; a PNG that cannot be written raises OSError.
    """
    overlay_of = dict(plan)
    model_id = explainer.scorer.card.model_id
    for explanations in explainer.explain([scan for scan, _ in plan], workers):
        rows = []
        for explanation in explanations:
            extra = fingerprint(explanation.path) | {OVERLAY_COLUMN: ""}
            error = explanation.error
            if not error:
                try:
                    image = explainer.overlay(explanation, long_side, threshold)
                except ScanError as failure:  # the file changed or vanished since it was scored
                    error = str(failure)
            if error:
                rows.append(Row(str(explanation.path), None, threshold, model_id, error, extra))
                continue
            write_png(image, folder / overlay_of[explanation.path])
            extra[OVERLAY_COLUMN] = str(overlay_of[explanation.path])
            rows.append(
                Row(str(explanation.path), explanation.probability, threshold, model_id, trailing_columns=extra)
            )
        yield rows


def randomized_copy(network: Any, config: ModelConfig, stages: int = 1, seed: int = 0) -> Any:
    """NETWORK with every member's last STAGES conv stages and logit layer re-initialised, the rest as trained.

    The model-randomisation test of Adebayo et al. (2018): maps that stay the same when the
    weights they explain are random show the input, not the model. Kernels get Keras's default
    Glorot-uniform draw (from SEED, so the check repeats), biases zero, batch norms the identity.
    """
    copy = build_model(config)
    copy.set_weights(network.get_weights())
    last = len(config.widths)
    prefixes = tuple(f"m{member}_s{stage}_" for member in range(config.members) for stage in range(last - stages, last))
    logits = tuple(member_logit_layer(member) for member in range(config.members))
    rng = np.random.default_rng(seed)
    for layer in copy.layers:
        if layer.name.startswith(prefixes) or layer.name in logits:
            layer.set_weights([_initial(weight.name, tuple(weight.shape), rng) for weight in layer.weights])
    return copy


def _initial(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if name == "kernel":
        receptive = int(np.prod(shape[:-2]))
        limit = np.sqrt(6.0 / (receptive * (shape[-2] + shape[-1])))
        return rng.uniform(-limit, limit, shape).astype(np.float32)
    return (np.ones if name in ("gamma", "moving_variance") else np.zeros)(shape, np.float32)
