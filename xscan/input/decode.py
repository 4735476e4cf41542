"""Reading one scan file into a 2-D uint8 grey array: one guarded open, the format from the file, one error type."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from pydicom.dataset import Dataset

from xscan.errors import ScanError
from xscan.input.damage import decoding
from xscan.input.dicom.image import grey_image, read_dataset, read_headerless_dataset
from xscan.input.formats import (
    DICOM_MARKER_END,
    FORMAT_OF_EXTENSION,
    Kind,
    has_dicom_marker,
    image_format,
    kind_by_name,
    starts_with_data_element,
)
from xscan.input.limits import MAX_FILE_BYTES, MAX_PIXELS, MIN_SIDE
from xscan.input.native_messages import noting

# Every decode failure becomes a ScanError with its own reason; OpenCV's log lines would only repeat it on stderr.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

# Some writers pad a few bytes after a JPEG's end-of-image marker or a PNG's IEND chunk.
TRAILER_SLACK = 1024


class ScanFile:
    """One scan file, opened once: its kind, and its bytes or its DICOM dataset, each read at most once.

    A DICOM is `headerless` when it was written without the Part 10 preamble and marker.
    """

    def __init__(self, path: Path, stream: BinaryIO, kind: Kind, headerless: bool = False) -> None:
        """Hold an open scan file; nothing is read yet.

        Args:
            path: The file's path, named in messages and used for its extension.
            stream: The file, open for binary reading at its start.
            kind: What the file is (an image, or a DICOM).
            headerless: Whether the DICOM lacks the Part 10 preamble and marker.
        """
        self.path = path
        self.kind = kind
        self.headerless = headerless
        self.stream = stream
        self._raw: bytes | None = None
        self._dataset: Dataset | None = None

    def raw(self) -> bytes:
        """Read the whole file, once.

        Returns:
            The file's bytes (an image's), at most MAX_FILE_BYTES + 1 of them.
        """
        if self._raw is None:
            self._raw = self.stream.read(MAX_FILE_BYTES + 1)
        return self._raw

    def dataset(self) -> Dataset:
        """Parse the DICOM dataset, once.

        Returns:
            The dataset; its pixel data is read from the open file when first used.
        """
        if self._dataset is None:
            self._dataset = read_headerless_dataset(self.stream) if self.headerless else read_dataset(self.stream)
        return self._dataset

    def grey(self, min_side: int = 0) -> np.ndarray:
        """Decode the scan.

        Args:
            min_side: See `decode_image`.

        Returns:
            The scan as a 2-D uint8 grey array.

        Raises:
            ScanError: The file cannot be decoded, or its image is too small to be a radiograph.
        """
        if self.kind is Kind.DICOM:
            grey = grey_image(self.dataset(), self.stream)
        else:
            grey = decode_image(self.raw(), self.path, min_side)
        if min(grey.shape) < MIN_SIDE:
            raise ScanError(f"image too small to be a radiograph ({grey.shape[1]}x{grey.shape[0]} pixels)")
        return grey


def decode(path: Path, min_side: int = 0) -> np.ndarray:
    """Decode any supported scan.

    Args:
        path: The scan file.
        min_side: See `decode_image`.

    Returns:
        The scan as a 2-D uint8 grey array.

    Raises:
        ScanError: The file cannot be scored, with the reason.
    """
    with open_scan(path) as scan:
        return scan.grey(min_side)


@contextmanager
def open_scan(path: Path) -> Iterator[ScanFile]:
    """Open a scan file once for reading, and tell its kind.

    A file without a known extension is a scan only if it is DICOM: its first bytes decide, as
    they decide whether a DICOM has the Part 10 header or is a bare data set
    (`starts_with_data_element`).

    Args:
        path: The file.

    Yields:
        The open file; an exception from a decoder raised within becomes a ScanError.

    Raises:
        ScanError: The file is not a regular file, is empty or is huge, cannot be read, or is not a
            scan.
    """
    kind = kind_by_name(path)
    with _open_regular_file(path) as stream:
        headerless = False
        if kind is not Kind.IMAGE:
            headerless = _is_headerless_dicom(stream, path, kind)
            kind = Kind.DICOM
        yield ScanFile(path, stream, kind, headerless)


def _is_headerless_dicom(stream: BinaryIO, path: Path, kind: Kind) -> bool:
    """Whether an open DICOM candidate is a bare data set (True) or Part 10 (False); ScanError if it is neither."""
    head = stream.read(DICOM_MARKER_END)
    stream.seek(0)
    if has_dicom_marker(head):
        return False
    if starts_with_data_element(head):
        return True
    if kind is Kind.MAYBE_DICOM:
        raise ScanError(f"unsupported file type {path.suffix or '(no extension)'}")
    raise ScanError(_not_dicom(head))


def _not_dicom(head: bytes) -> str:
    found = image_format(head)
    content = f"a {found} image" if found else _describe_content(head)
    return f"not a DICOM file: no DICM marker at byte 128 and no data set at byte 0 (the file holds {content})"


@contextmanager
def _open_regular_file(path: Path) -> Iterator[BinaryIO]:
    try:
        # Non-blocking: a FIFO swapped in after the walk must not hang the run.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise ScanError(f"cannot read file: {error.strerror or error}") from None
    try:
        status = os.fstat(descriptor)
    except OSError as error:
        os.close(descriptor)
        raise ScanError(f"cannot read file: {error.strerror or error}") from None
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        raise ScanError("not a regular file")
    with os.fdopen(descriptor, "rb") as stream:
        stream.raw.name = str(path)  # what pydicom names in its messages
        if status.st_size > MAX_FILE_BYTES:
            raise ScanError(f"file too large ({status.st_size >> 20} MiB; limit {MAX_FILE_BYTES >> 20} MiB)")
        if status.st_size == 0:
            raise ScanError("empty file (0 bytes)")
        try:
            with decoding("damaged file"):
                yield stream
        except OSError as error:
            raise ScanError(f"cannot read file: {error.strerror or error}") from None


def sniff_format(raw: bytes, path: Path) -> str:
    """Tell an image's format from its bytes; a PNG named .jpg is still decoded, as a PNG.

    Args:
        raw: The file's bytes.
        path: The file, whose extension the error message names.

    Returns:
        JPEG, PNG, TIFF or BMP.

    Raises:
        ScanError: The bytes are none of these, saying what they hold.
    """
    found = image_format(raw)
    if found is None:
        expected = FORMAT_OF_EXTENSION.get(path.suffix.lower(), "supported")
        raise ScanError(f"not a {expected} image: the file holds {_describe_content(raw[:512])}")
    return found


def _describe_content(head: bytes) -> str:
    if b"\x00" in head or any(byte < 32 and byte not in b"\t\n\r\f" for byte in head):
        return "unrecognised binary data"
    lowered = head.lstrip().lower()
    return "HTML" if lowered.startswith((b"<!doctype html", b"<html")) else "text"


def decode_image(raw: bytes, path: Path, min_side: int = 0) -> np.ndarray:
    """Decode a JPEG, PNG, TIFF or BMP file's bytes with OpenCV into uint8 grey.

    The bytes are checked first (format signature, complete file, pixel count in the header), so
    that a truncated or hostile file is refused with a specific reason before OpenCV allocates.
    With `min_side`, a large JPEG is decoded at a reduced scale (1/2, 1/4 or 1/8, done inside
    libjpeg and so much faster) as long as both sides stay at least `min_side` pixels.

    Args:
        raw: The file's bytes.
        path: The file, named in messages.
        min_side: The smallest side a reduced JPEG may have; 0 decodes at full scale.

    Returns:
        The image as a 2-D uint8 grey array (16-bit and float images stretched over their own range).

    Raises:
        ScanError: The bytes are not a complete, decodable image within the limits.
    """
    image_format = sniff_format(raw, path)
    check_complete(raw, image_format)
    size = header_size(raw, image_format)
    check_pixel_count(size)
    data = np.frombuffer(raw, dtype=np.uint8)
    flags = cv2.IMREAD_GRAYSCALE
    if min_side and image_format == "JPEG":
        flags = _reduced_jpeg_flag(size, min_side)
    if flags == cv2.IMREAD_GRAYSCALE:
        flags |= cv2.IMREAD_ANYDEPTH  # keep 16-bit PNG and TIFF depth; reduced modes are 8-bit only
    try:
        image = noting(f"cv2.imdecode ({image_format})", lambda: cv2.imdecode(data, flags))
    except cv2.error:  # OpenCV raises, rather than returning None, for a few malformed headers
        image = None
    if image is None:
        raise ScanError(f"not a decodable {image_format} image")
    with decoding(f"cannot convert the decoded {image_format} image to grey"):
        return _to_uint8(image)


def check_complete(raw: bytes, image_format: str) -> None:
    """Refuse a file cut short: decoders tend to fill the missing part of an image with grey.

    Args:
        raw: The file's bytes.
        image_format: JPEG, PNG, TIFF or BMP.

    Raises:
        ScanError: A JPEG without its end-of-image marker, a PNG without IEND, a BMP shorter than it
            says.
    """
    if image_format == "JPEG" and raw.rfind(b"\xff\xd9", -TRAILER_SLACK) < 0:
        raise ScanError("truncated JPEG: no end-of-image marker")
    if image_format == "PNG" and raw.rfind(b"IEND", -TRAILER_SLACK) < 0:
        raise ScanError("truncated PNG: no IEND chunk")
    if image_format == "BMP":
        declared = int.from_bytes(raw[2:6], "little")
        if len(raw) < declared:
            raise ScanError(f"truncated BMP: {len(raw)} of {declared} bytes")


def check_pixel_count(size: tuple[int, int] | None) -> None:
    """Refuse an image whose header claims more than MAX_PIXELS, before anything is allocated.

    Args:
        size: (width, height) from the header, or None where it does not say.

    Raises:
        ScanError: The image is too large.
    """
    if size and size[0] * size[1] > MAX_PIXELS:
        raise ScanError(
            f"image too large: header claims {size[0]}x{size[1]} pixels (limit {MAX_PIXELS // 1_000_000} megapixels)"
        )


def header_size(raw: bytes, image_format: str) -> tuple[int, int] | None:
    """Read an image's size from its header, without decoding.

    Args:
        raw: The file's bytes.
        image_format: JPEG, PNG, TIFF or BMP.

    Returns:
        (width, height) as the header states it, or None where the header does not say.
    """
    if image_format == "PNG" and raw[12:16] == b"IHDR":
        return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    if image_format == "BMP" and len(raw) >= 26:
        return abs(int.from_bytes(raw[18:22], "little", signed=True)), abs(
            int.from_bytes(raw[22:26], "little", signed=True)
        )
    if image_format == "TIFF":
        return _tiff_size(raw)
    if image_format == "JPEG":
        return _jpeg_size(raw)
    return None


def _tiff_size(raw: bytes) -> tuple[int, int] | None:
    """ImageWidth (tag 256) and ImageLength (tag 257) from the first image directory."""
    order = "little" if raw[:2] == b"II" else "big"

    def number(offset: int, length: int) -> int:
        return int.from_bytes(raw[offset : offset + length], order)

    directory = number(4, 4)
    found: dict[int, int] = {}
    for index in range(number(directory, 2)):
        entry = directory + 2 + 12 * index
        if entry + 12 > len(raw):
            break
        tag, kind = number(entry, 2), number(entry + 2, 2)
        if tag in (256, 257):
            found[tag] = number(entry + 8, 2 if kind == 3 else 4)  # kind 3 is SHORT, else LONG
    return (found[256], found[257]) if len(found) == 2 else None


_REDUCED = (
    (8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
    (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
    (2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
)


def _reduced_jpeg_flag(size: tuple[int, int] | None, min_side: int) -> int:
    if size is None:
        return cv2.IMREAD_GRAYSCALE
    smaller = min(size)
    for factor, flag in _REDUCED:
        if smaller // factor >= min_side:
            return flag
    return cv2.IMREAD_GRAYSCALE


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame marker, without decoding."""
    i = 2
    while i + 9 < len(raw):
        if raw[i] != 0xFF:
            return None
        marker = raw[i + 1]
        length = int.from_bytes(raw[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(raw[i + 7 : i + 9], "big"), int.from_bytes(raw[i + 5 : i + 7], "big")
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
