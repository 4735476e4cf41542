"""Reading one scan file into a 2-D uint8 grey array; one function per format, one error type."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from xscan.walk import is_dicom


class ScanError(Exception):
    """A file that cannot be scored; the message is the one-line reason written to the CSV."""


# Smaller than this on either side is not a radiograph (a thumbnail or an icon).
MIN_SIDE = 64


def decode_opencv(path: Path, min_side: int = 0) -> np.ndarray:
    """Decode a JPEG, PNG, TIFF or BMP with OpenCV into uint8 grey.

    With `min_side`, a large JPEG is decoded at a reduced scale (1/2, 1/4 or 1/8, done inside
    libjpeg and so much faster) as long as both sides stay at least `min_side` pixels.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise ScanError(f"cannot read file: {error.strerror or error}") from None
    if data.size == 0:
        raise ScanError("empty file (0 bytes)")
    flags = cv2.IMREAD_GRAYSCALE
    if min_side and path.suffix.lower() in (".jpg", ".jpeg"):
        flags = _reduced_jpeg_flag(data, min_side)
    if flags == cv2.IMREAD_GRAYSCALE:
        flags |= cv2.IMREAD_ANYDEPTH  # keep 16-bit PNG and TIFF depth; reduced modes are 8-bit only
    image = cv2.imdecode(data, flags)
    if image is None:
        raise ScanError("not a decodable image")
    return _to_uint8(image)


_REDUCED = ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4), (2, cv2.IMREAD_REDUCED_GRAYSCALE_2))


def _reduced_jpeg_flag(data: np.ndarray, min_side: int) -> int:
    size = _jpeg_size(data)
    if size is None:
        return cv2.IMREAD_GRAYSCALE
    smaller = min(size)
    for factor, flag in _REDUCED:
        if smaller // factor >= min_side:
            return flag
    return cv2.IMREAD_GRAYSCALE


def _jpeg_size(data: np.ndarray) -> tuple[int, int] | None:
    """(height, width) from a JPEG's start-of-frame marker, without decoding."""
    raw = data.tobytes()
    i = 2
    while i + 9 < len(raw):
        if raw[i] != 0xFF:
            return None
        marker = raw[i + 1]
        length = int.from_bytes(raw[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(raw[i + 5 : i + 7], "big"), int.from_bytes(raw[i + 7 : i + 9], "big")
        i += 2 + length
    return None


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if image.dtype == np.uint8:
        return image
    # 16-bit or float images: stretch their own range to 0..255.
    image = image.astype(np.float32)
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros(image.shape, np.uint8)
    return ((image - low) * (255.0 / (high - low))).round().astype(np.uint8)


def decode_dicom(path: Path, min_side: int = 0) -> np.ndarray:
    """Decode a DICOM file's first frame into uint8 grey as a viewer shows it (LUTs, window, MONOCHROME1)."""
    from xscan.dicom import read_grey  # here, not at the top: xscan.dicom imports ScanError from this module

    return read_grey(path)


Decoder = Callable[[Path, int], np.ndarray]

DECODERS: dict[str, Decoder] = {
    ".jpg": decode_opencv,
    ".jpeg": decode_opencv,
    ".png": decode_opencv,
    ".tif": decode_opencv,
    ".tiff": decode_opencv,
    ".bmp": decode_opencv,
    ".dcm": decode_dicom,
    ".dicom": decode_dicom,
}


def decode(path: Path, min_side: int = 0) -> np.ndarray:
    """Decode any supported scan into a 2-D uint8 grey array, or raise ScanError."""
    decoder = DECODERS.get(path.suffix.lower())
    if decoder is None and is_dicom(path):
        decoder = decode_dicom
    if decoder is None:
        raise ScanError(f"unsupported file type {path.suffix or '(no extension)'}")
    grey = decoder(path, min_side)
    if min(grey.shape) < MIN_SIDE:
        raise ScanError(f"image too small to be a radiograph ({grey.shape[1]}x{grey.shape[0]} pixels)")
    return grey
