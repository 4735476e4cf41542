"""The heatmap images of `xscan sr`: per scored DICOM film, a Secondary Capture of it with its heatmap and a banner.

A radiologist reads pictures: each image is the film as a viewer shows it (xscan's own DICOM
decoding: modality LUT, VOI LUT or window, MONOCHROME1 inverted), in RGB, at most LONG_SIDE
pixels on its longer side, with the class activation map the scoring network outputs
(xscan.explain.cam, the heatmap of `xscan explain`) blended over it and a banner burned in
below: the verdict, the probability and threshold, the model id, and UNVERIFIED with the
statement that xscan aids a physician. An out-of-scope film gets the banner with the reason and
no heatmap. The images form a second new series of the study (HEATMAP_SERIES_NUMBER); each refers
to its film (Source Image Sequence), says its annotation is burned in and was made by a
workstation (Conversion Type WSD), and copies the film's patient and study attributes (highdicom's
SCImage.from_ref_dataset). Its UIDs are derived from the site's root, the film's SOP Instance UID,
the model id and the threshold, so a re-run rewrites nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from xscan.about import DISCLAIMER
from xscan.errors import ResultsWriteError, ScanError, UsageError
from xscan.explain.cam import Explainer
from xscan.explain.overlay import blend, colour_scale
from xscan.input.decode import decode
from xscan.input.preprocess import preprocess
from xscan.model.scorer import MODEL_BATCH, Scorer
from xscan.pacs.identity import derived_uid, software_versions
from xscan.pacs.sr import MANUFACTURER, evidence, save_atomically
from xscan.pacs.studies import SourceChangedError, Study, StudyFile, file_of, verdict_words
from xscan.scoring.results import Row

HEATMAP_SERIES_NUMBER = 9902  # after the report's series (9901) in a viewer's list
HEATMAP_SERIES_DESCRIPTION = "xscan heatmaps (unverified)"
HEATMAP_FOLDER = "heatmaps"  # below the reports' folder: one <film's SOP Instance UID>.dcm each
LONG_SIDE = 2048  # at most this many pixels on the image's longer side, banner included
MIN_LONG_SIDE = 1024  # a smaller film is enlarged to this, so that the banner's text stays legible
# Films drawn per network call: the call costs as much for one as for MODEL_BATCH (it is padded), and each
# film waits as a picture of up to 4 MB; half the batch keeps `xscan sr` under 300 MB on full-size films.
FILMS_AT_ONCE = MODEL_BATCH // 2
EM_DASH = "\u2014"
UNVERIFIED = f"UNVERIFIED {EM_DASH} {DISCLAIMER.removesuffix('.')}"
BANNER_LINES = 3  # verdict, model, UNVERIFIED (`banner_lines`)
BANNER_BACKGROUND = (16, 16, 16)  # RGB: a near-black band, told apart from any film by the text on it
BANNER_TEXT = (255, 255, 255)
BANNER_WARNING = (255, 196, 0)  # the UNVERIFIED line, in amber


@dataclass(frozen=True)
class Film:
    """A scored DICOM image of a study, and the heatmap image to write of it."""

    study: Study
    image: StudyFile
    instance_number: int


def films_of(studies: Sequence[Study], scored: Sequence[Sequence[StudyFile]]) -> list[Film]:
    """Give the films to draw, numbered within their study.

    Args:
        studies: The reported studies.
        scored: The reported images of each study, in the same order.

    Returns:
        The films.
    """
    return [
        Film(study, image, number)
        for study, images in zip(studies, scored, strict=True)
        for number, image in enumerate(images, start=1)
    ]


def heatmap_uids(film: Film, root: str) -> tuple[str, str]:
    """Give the series and SOP Instance UIDs of a film's heatmap image.

    Args:
        film: The film.
        root: The UID root.

    Returns:
        (series UID, SOP Instance UID), derived from the root, the film, the model id and the threshold.
    """
    row = film.image.row
    series = derived_uid(root, [film.study.key, row.model, "xscan heatmaps"])
    instance = derived_uid(root, [str(film.image.header.SOPInstanceUID), row.model, f"{row.threshold:.6f}", "heatmap"])
    return series, instance


def check_model(films: Sequence[Film], scorer: Scorer) -> None:
    """Refuse films scored by another model than the one loaded (a site suffix is fine).

    Args:
        films: The films.
        scorer: The loaded model.

    Raises:
        UsageError: A film's model is not the scorer's network.
    """
    base = scorer.card.model_id
    others = sorted({film.image.row.model for film in films if film.image.row.model.split("+")[0] != base})
    if others:
        raise UsageError(
            f"the results come from model {', '.join(others)}, the loaded model is {base}: its heatmaps would not "
            "be those of the figures; pass --weights with the results' model, or --no-images"
        )


def write_heatmap_images(films: Sequence[Film], folder: Path, scorer: Scorer, root: str) -> tuple[list[Path], int]:
    """Write <folder>/<film's SOP Instance UID>.dcm for each film; a file already holding its UID stays.

    The films are decoded once each, FILMS_AT_ONCE per network call: the model input (for the map)
    and the picture come from the same decoded pixels.

    Args:
        films: The films.
        folder: The heatmap images' folder.
        scorer: The loaded model.
        root: The UID root.

    Returns:
        Every image's path, and how many were new.

    Raises:
        SourceChangedError: A film cannot be read any more; names it (exit 2).
        ResultsWriteError: The folder cannot be written (exit 3).
    """
    paths: list[Path] = []
    pending: list[tuple[Film, Path]] = []
    for film in films:
        path = folder / f"{film.image.header.SOPInstanceUID}.dcm"
        paths.append(path)
        if not _holds(path, heatmap_uids(film, root)[1]):
            pending.append((film, path))
    if not pending:
        return paths, 0
    explainer = Explainer(scorer)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for batch in _batches(pending, FILMS_AT_ONCE):
            greys, inputs = [], []
            for film, _ in batch:  # each film decoded once; kept only at the size it is drawn
                grey = _decoded(film)
                inputs.append(preprocess(grey, scorer.card.image_size))
                greys.append(fitted(grey))
                del grey
            _, cams = explainer.cells(np.stack(inputs))
            for (film, path), grey, cells in zip(batch, greys, cams, strict=True):
                # No name keeps the picture: once the data set holds its pixels, it is freed before the file is written.
                picture = heatmap_picture(grey, None if film.image.row.scope else cells, film.image.row, explainer)
                image = heatmap_dataset(film, picture, root)
                del picture
                save_atomically(image, path)
                del image
    except OSError as error:
        raise ResultsWriteError(f"cannot write heatmap images into {folder}: {error.strerror or error}") from None
    return paths, len(pending)


def fitted(grey: np.ndarray) -> np.ndarray:
    """Resize a film so that it and the banner below it have MIN_LONG_SIDE to LONG_SIDE pixels.

    Args:
        grey: The film as shown.

    Returns:
        The resized film.
    """
    height, width = grey.shape
    band = _banner_height(BANNER_LINES, _font_size(min(max(height, width, MIN_LONG_SIDE), LONG_SIDE)))
    factor = min(max(1.0, MIN_LONG_SIDE / max(height, width)), LONG_SIDE / width, (LONG_SIDE - band) / height)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    if size == (width, height):
        return grey
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)


def heatmap_picture(grey: np.ndarray, cells: np.ndarray | None, row: Row, explainer: Explainer) -> np.ndarray:
    """Draw the RGB picture: the film with its heat, and the banner below.

    Args:
        grey: The film as shown, already `fitted`.
        cells: The class activation map; None draws no heat.
        row: The film's row, for the banner.
        explainer: The loaded model's explainer.

    Returns:
        The picture.
    """
    lines = banner_lines(row)
    height, width = grey.shape
    font_size = _font_size(min(max(height, width, MIN_LONG_SIDE), LONG_SIDE))
    band = _banner_height(len(lines), font_size)
    if cells is None:
        shown = blend(grey, None)
    else:
        heat = explainer.heat(cells, width, height)
        shown = blend(grey, heat, colour_scale(heat))
        del heat
    picture = np.empty((height + band, width, 3), np.uint8)  # filled in place: a 2,048 px film is 12 MB a copy
    cv2.cvtColor(shown, cv2.COLOR_BGR2RGB, dst=picture[:height])
    picture[height:] = banner(lines, width, band, font_size)
    return picture


def banner_lines(row: Row) -> list[str]:
    """What the banner says: the verdict with probability and threshold (or why out of scope), the model, UNVERIFIED."""
    if row.scope:
        verdict = f"xscan: {verdict_words(row.label)}, not assessed: {row.scope}"
    else:
        verdict = (
            f"xscan: {verdict_words(row.label)}, probability of pneumonia {row.probability:.6f} "
            f"(threshold {row.threshold:.6f})"
        )
    heat = "no heatmap" if row.scope else "colour: where the pneumonia score rose (class activation map)"
    return [verdict, f"model {row.model}; {heat}", UNVERIFIED]


def banner(lines: Sequence[str], width: int, height: int, font_size: int) -> np.ndarray:
    """Draw lines of text on a band, each shrunk to fit the width; the last one in amber.

    Args:
        lines: The text.
        width: The band's width in pixels.
        height: The band's height in pixels.
        font_size: The largest font size.

    Returns:
        The RGB band.
    """
    from PIL import Image, ImageDraw

    band = Image.new("RGB", (width, height), BANNER_BACKGROUND)
    draw = ImageDraw.Draw(band)
    margin, step = max(4, font_size // 2), round(font_size * 1.35)
    for number, line in enumerate(lines):
        font = _font(font_size)
        room = width - 2 * margin
        if draw.textlength(line, font=font) > room:
            font = _font(max(6, int(font_size * room / draw.textlength(line, font=font))))
        colour = BANNER_WARNING if number == len(lines) - 1 else BANNER_TEXT
        _draw_line(draw, (margin, margin + number * step), line, font, colour)
    return np.asarray(band)


def _draw_line(draw: Any, origin: tuple[int, int], line: str, font: Any, colour: tuple[int, int, int]) -> None:
    """LINE at ORIGIN; an em dash is drawn as a rule, as Pillow's built-in font has no glyph for it."""
    x, y = origin
    parts = line.split(EM_DASH)
    for number, part in enumerate(parts):
        draw.text((x, y), part, font=font, fill=colour)
        x += round(draw.textlength(part, font=font))
        if number < len(parts) - 1:
            size = font.size
            middle = y + round(size * 0.62)
            draw.line([(x + size // 6, middle), (x + size, middle)], fill=colour, width=max(1, size // 12))
            x += size + size // 6


def heatmap_dataset(film: Film, picture: np.ndarray, root: str) -> hd.sc.SCImage:
    """Build the Secondary Capture of a picture, in the study's heatmap series.

    Args:
        film: The film the picture shows.
        picture: The RGB picture.
        root: The UID root.

    Returns:
        The Secondary Capture.
    """
    header, row = film.image.header, film.image.row
    series_uid, instance_uid = heatmap_uids(film, root)
    orientation = header.get("PatientOrientation")
    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=evidence(header),
        pixel_array=picture,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_uid,
        series_number=HEATMAP_SERIES_NUMBER,
        sop_instance_uid=instance_uid,
        instance_number=film.instance_number,
        manufacturer=MANUFACTURER,
        patient_orientation=("A", "F"),  # replaced below: highdicom asks for one, the film may have none
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    image.PatientOrientation = list(orientation) if orientation is not None and len(orientation) == 2 else ""
    image.Laterality = header.get("Laterality", "")  # type 2C: dciodvfy asks for it; the chest is not a paired organ
    image.SeriesDescription = HEATMAP_SERIES_DESCRIPTION
    image.ConversionType = "WSD"  # made by a workstation (xscan) from another image
    image.BurnedInAnnotation = "YES"  # the banner is text in the pixels
    image.ImageType = ["DERIVED", "SECONDARY"]
    image.DerivationDescription = "xscan: film as displayed, class activation map blended, banner added"
    image.SoftwareVersions = software_versions(row.model)
    source = Dataset()
    source.ReferencedSOPClassUID = header.SOPClassUID
    source.ReferencedSOPInstanceUID = header.SOPInstanceUID
    image.SourceImageSequence = [source]
    return image


def _decoded(film: Film) -> np.ndarray:
    try:
        return decode(file_of(film.image.row))
    except ScanError as error:
        raise SourceChangedError(f"{file_of(film.image.row)} was scored but cannot be read now ({error})") from None


def _holds(path: Path, sop_instance_uid: str) -> bool:
    import pydicom

    if not path.exists():
        return False
    try:
        held = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        return str(held.SOPInstanceUID) == sop_instance_uid
    except (OSError, ValueError, AttributeError):
        return False


def _batches(items: Sequence[tuple[Film, Path]], size: int) -> Iterator[Sequence[tuple[Film, Path]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _font_size(long_side: int) -> int:
    return int(np.clip(long_side / 60, 11, 32))


def _banner_height(lines: int, font_size: int) -> int:
    return 2 * max(4, font_size // 2) + round(font_size * 1.35) * lines


@cache
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size)  # Pillow's own FreeType font: the same on every machine, no system font needed
