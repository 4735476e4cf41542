"""Drawing a heatmap over a scan: the cell map laid on the scan's own geometry, blended, with a colour bar and caption.

Pure numpy and OpenCV, no TensorFlow: the scoring network computes the maps (xscan.explain.cam), this module draws them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from xscan.input.decode import decode

COLOUR_MAP = cv2.COLORMAP_TURBO  # blue (little) to red (most); perceptually smoother than jet
MOST_OPAQUE = 0.6  # the heat's opacity at the top of the scale; the scan always shows through
# A map is drawn on the scale 0..max(its own peak, this), in logit units per cell. Without a floor a
# scan whose strongest cell adds 0.01 to the logit would glow as red as one whose cell adds 1;
# with it, weak evidence stays faint. The bundled model's cells reach about 0.2 to 0.8 on pneumonia scans.
SCALE_FLOOR = 0.1
BLEND_ROWS = 128  # rows blended at a time (see `blend`)
BACKGROUND = (24, 24, 24)  # BGR of the margins around the scan
TEXT = (235, 235, 235)
FONT = cv2.FONT_HERSHEY_SIMPLEX
BAR_PANEL = 84  # pixels right of the scan: colour bar and its tick labels
LINE_HEIGHT = 22  # pixels per caption line


@dataclass(frozen=True)
class Grid:
    """Where the cells of a map sit on the model input, in pixel-centre coordinates (0 is the first pixel's centre).

    Cell j's receptive field is centred on pixel `offset + stride * j` and spans `field` pixels.
    """

    cells: int
    stride: int
    offset: float
    field: int


def heat_on_scan(cells: np.ndarray, grid: Grid, image_size: int, width: int, height: int) -> np.ndarray:
    """The map CELLS (rows x columns of GRID) resampled onto a scan of WIDTH x HEIGHT pixels.

    The model saw the scan squashed to IMAGE_SIZE x IMAGE_SIZE; each axis is stretched back on its
    own, so the map lies on the anatomy. Each cell's value sits at the centre of its receptive
    field, with bilinear interpolation between centres and the nearest cell's value beyond them.
    """

    # Inverse map: for each output pixel x, the (fractional) cell index whose value it takes.
    def axis(length: int) -> tuple[float, float]:
        scale = image_size / length
        return scale / grid.stride, (0.5 * scale - 0.5 - grid.offset) / grid.stride

    (sx, tx), (sy, ty) = axis(width), axis(height)
    inverse = np.array([[sx, 0.0, tx], [0.0, sy, ty]])
    return cv2.warpAffine(
        np.asarray(cells, np.float32),
        inverse,
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def display_scan(path: Path, long_side: int) -> np.ndarray:
    """The scan at PATH as uint8 grey, as the file shows it (not equalized), resized to LONG_SIDE on its longer side.

    Raises xscan.input.decode.ScanError when the file cannot be read.
    """
    grey = decode(path, min_side=long_side)  # a large JPEG is decoded at a reduced scale, never below LONG_SIDE
    height, width = grey.shape
    factor = long_side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)


def colour_scale(heat: np.ndarray) -> float:
    """The value drawn at the top of the colour scale for HEAT (see SCALE_FLOOR)."""
    return max(float(heat.max(initial=0.0)), SCALE_FLOOR)


def blend(grey: np.ndarray, heat: np.ndarray | None, scale: float = 1.0) -> np.ndarray:
    """BGR image: GREY with HEAT (>= 0, same shape) in colour, clear where it is 0, MOST_OPAQUE at SCALE.

    Without a heat map it is the grey scan alone (in BGR). Computed in float32 with OpenCV's
    vectorised arithmetic, BLEND_ROWS rows at a time: a 2,048-pixel film (`xscan sr`'s images)
    needs a few megabytes beside its picture, where the whole film in float32 took some 150.
    """
    base = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if heat is None:
        return base
    for top in range(0, grey.shape[0], BLEND_ROWS):
        rows = slice(top, top + BLEND_ROWS)
        level = np.clip(np.asarray(heat[rows], np.float32) / np.float32(scale), 0.0, 1.0)
        colour = cv2.applyColorMap(cv2.convertScaleAbs(level, alpha=255.0), COLOUR_MAP).astype(np.float32)
        shown = base[rows].astype(np.float32)
        cv2.subtract(colour, shown, dst=colour)  # in place: fresh arrays cost more than the arithmetic
        cv2.multiply(colour, cv2.merge([level * np.float32(MOST_OPAQUE)] * 3), dst=colour)
        cv2.add(shown, colour, dst=shown)
        base[rows] = cv2.convertScaleAbs(shown)
    return base


def annotate(blended: np.ndarray, scale: float, caption: list[str]) -> np.ndarray:
    """BLENDED with a colour bar (0 to SCALE, in logit units per cell) on its right and CAPTION lines below."""
    height, width = blended.shape[:2]
    canvas = np.full((height + LINE_HEIGHT * len(caption) + 12, width + BAR_PANEL, 3), BACKGROUND, np.uint8)
    canvas[:height, :width] = blended
    _colour_bar(canvas, left=width + 10, top=10, bottom=height - 10, scale=scale)
    for number, line in enumerate(caption):
        _text(canvas, line, (8, height + LINE_HEIGHT * (number + 1)), canvas.shape[1] - 16)
    return canvas


def _colour_bar(canvas: np.ndarray, left: int, top: int, bottom: int, scale: float) -> None:
    length = max(bottom - top, 2)
    levels = np.linspace(255, 0, length).round().astype(np.uint8)[:, np.newaxis]  # top is the scale's maximum
    bar = cv2.applyColorMap(np.repeat(levels, 14, axis=1), COLOUR_MAP)
    canvas[top : top + length, left : left + 14] = bar
    for fraction in (0.0, 0.5, 1.0):
        y = round(top + (1 - fraction) * (length - 1))
        cv2.line(canvas, (left + 14, y), (left + 18, y), TEXT, 1)
        _text(canvas, f"{fraction * scale:.2f}", (left + 21, y + 5), BAR_PANEL - 32)


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], room: int) -> None:
    """Draw TEXT (ASCII) at ORIGIN, shrunk to fit ROOM pixels of width."""
    scale = 0.45
    width = cv2.getTextSize(text, FONT, scale, 1)[0][0]
    if width > room:
        scale *= room / width
    cv2.putText(canvas, text, origin, FONT, scale, TEXT, 1, cv2.LINE_AA)


def write_png(image: np.ndarray, destination: Path) -> None:
    """Write IMAGE as a PNG, making its folder; a failure is an OSError (cv2.imwrite would only return False)."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"cannot encode {destination} as PNG")
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(encoded.tobytes())
