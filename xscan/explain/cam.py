"""The one heatmap xscan draws: the class activation map the LiteRT file outputs, laid on the scan (no TensorFlow).

Each ensemble member is conv stages, global average pooling and one logit, so its Grad-CAM at
the last stage is the class activation map of Zhou et al. (2016): the stage's feature maps
weighted by the logit's weights. The scoring network computes it in the same call that scores
(xscan.model.network.class_activation_map), so `xscan explain`, the review page and `xscan sr`'s
images all draw the map of the numbers they show, with LiteRT alone. xscan.explain.gradcam keeps
the TensorFlow Grad-CAM the tests compare it with. docs/explain.md says what the maps can and cannot show.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xscan.explain.overlay import Grid, annotate, blend, colour_scale, display_scan, heat_on_scan
from xscan.model.card import model_config_from_card
from xscan.model.network import ModelConfig, member_convs
from xscan.model.scorer import MODEL_BATCH, Scorer
from xscan.scoring.cpus import usable_cpus
from xscan.scoring.pipeline import LoadedScan, loaded_batches
from xscan.scoring.results import Row

LONG_SIDE = 512  # pixels on the longer side of an overlay, unless asked otherwise
MAP_NAME = "class activation map (Grad-CAM)"  # how captions and pages name the heatmap


def grid_from_convs(image_size: int, convs: Iterable[tuple[int, int]]) -> Grid:
    """Give where the cells of the feature map after some convolutions sit on the input.

    A stride-2 'same' convolution on an even side pads one pixel at the end only, so each such
    stage moves the cell centres half an input pixel right and down: 15.5 pixels in all at
    160 px, half a 32-pixel cell. Maps placed on an even grid would be off by that much.

    Args:
        image_size: The input's side in pixels.
        convs: The convolutions in order, as (kernel, stride), all with "same" padding.

    Returns:
        The grid of the cells on the input.
    """
    side, field, jump, steps = image_size, 1, 1, []
    for kernel, stride in convs:
        out = -(-side // stride)
        before = max((out - 1) * stride + kernel - side, 0) // 2
        steps.append((stride, (kernel - 1) / 2 - before))  # output pixel c is centred on input pixel stride * c + shift
        field += (kernel - 1) * jump
        jump *= stride
        side = out
    stride, offset = 1, 0.0
    for step, shift in reversed(steps):
        stride, offset = stride * step, step * offset + shift
    return Grid(cells=side, stride=stride, offset=offset, field=field)


def cam_grid(config: ModelConfig) -> Grid:
    """Where the class activation map's cells sit on the model input, from the network's shape in the card."""
    return grid_from_convs(config.image_size, member_convs(config))


@dataclass(frozen=True)
class Explanation:
    """One scan: its probability as `xscan score` computes it, and its signed class activation map; or why it failed."""

    path: Path
    probability: float | None
    cells: np.ndarray | None  # cells x cells, logit units: > 0 where the cell raised the pneumonia score
    error: str = ""


class Explainer:
    """Probabilities and heatmaps for files, from one loaded model, in the scoring network's one call."""

    def __init__(self, scorer: Scorer) -> None:
        """Prepare the heatmap geometry of a loaded model.

        Args:
            scorer: The loaded model; its card gives the cell grid and the input size.
        """
        self.scorer = scorer
        self.grid = cam_grid(model_config_from_card(scorer.card))
        self.image_size = scorer.card.image_size

    def cells(self, model_inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and class activation maps (inputs, cells, cells) of a stack of model inputs."""
        assessed = self.scorer.assess(model_inputs, cams=True)
        return assessed.probabilities, assessed.cams

    def explain(self, paths: Iterable[Path], workers: int | None = None) -> Iterator[list[Explanation]]:
        """Explain files in order, a batch at a time.

        Args:
            paths: The scan files.
            workers: The decoding threads, as in scoring.

        Yields:
            The explanations of one batch, in the order of the paths.
        """
        for batch in loaded_batches(paths, self.scorer.card.image_size, MODEL_BATCH, workers or usable_cpus()):
            yield self._explain_batch(batch)

    def _explain_batch(self, batch: list[LoadedScan]) -> list[Explanation]:
        scans = [entry.model_input for entry in batch if entry.model_input is not None]
        if not scans:
            return [Explanation(entry.path, None, None, entry.error) for entry in batch]
        # The probability from the same network call as the map: exactly the number `xscan score` writes.
        scored = iter(zip(*self.cells(np.stack(scans)), strict=True))
        explained = []
        for entry in batch:
            if entry.model_input is None:
                explained.append(Explanation(entry.path, None, None, entry.error))
            else:
                probability, cells = next(scored)
                explained.append(Explanation(entry.path, float(probability), cells))
        return explained

    def heat(self, cells: np.ndarray, width: int, height: int) -> np.ndarray:
        """Spread a map's positive part (Grad-CAM's ReLU) over a picture of the whole scan.

        Args:
            cells: The class activation map, cells x cells.
            width: The picture's width in pixels.
            height: The picture's height in pixels.

        Returns:
            The heat, height x width.
        """
        return heat_on_scan(np.maximum(cells, 0.0), self.grid, self.image_size, width, height)

    def picture(self, explanation: Explanation, long_side: int) -> tuple[np.ndarray, np.ndarray]:
        """Give the scan as uint8 grey and its heat on the same pixels.

        Args:
            explanation: The scan's explanation.
            long_side: The picture's longer side in pixels.

        Returns:
            (grey, heat), both with long_side pixels on the longer side.
        """
        grey = display_scan(explanation.path, long_side)
        return grey, self.heat(explanation.cells, grey.shape[1], grey.shape[0])

    def caption(self, explanation: Explanation, threshold: float) -> list[str]:
        """The lines under an overlay: label, probability and threshold; what the map is; the model."""
        row = Row(str(explanation.path), explanation.probability, threshold, self.scorer.card.model_id)
        return [
            f"{row.label}: probability of pneumonia {explanation.probability:.6f} (threshold {threshold:.4f})",
            f"{MAP_NAME}: where the pneumonia score rose; bar in logit per cell",
            f"model {row.model}; aids a physician, not a diagnostic device",
        ]

    def overlay(self, explanation: Explanation, long_side: int, threshold: float) -> np.ndarray:
        """The full overlay: scan, heat, colour bar and caption."""
        grey, heat = self.picture(explanation, long_side)
        scale = colour_scale(heat)
        return annotate(blend(grey, heat, scale), scale, self.caption(explanation, threshold))
