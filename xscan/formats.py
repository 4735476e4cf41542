"""What kind of scan a file is: image extensions and signatures, and the one rule that recognises a DICOM file."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

FORMAT_OF_EXTENSION = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
IMAGE_EXTENSIONS = frozenset(FORMAT_OF_EXTENSION)
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
# The first bytes of each image format; the bytes decide the format, not the file name.
SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
DICOM_MARKER_END = 132  # a DICOM Part 10 file has a 128-byte preamble, then b"DICM"


class Kind(Enum):
    IMAGE = "image"  # decoded by OpenCV
    DICOM = "dicom"  # decoded by pydicom
    MAYBE_DICOM = "maybe DICOM"  # no known extension: a DICOM if its first bytes carry the marker


def kind_by_name(path: Path) -> Kind | None:
    """The kind a file's name says it is; None for a name that is never a scan (an unknown extension, a DICOMDIR).

    PACS exports often name DICOM files by UID or not at all, so a name without a known image
    extension leaves the question to the file's first bytes (`has_dicom_marker`). A DICOMDIR is
    an export's index, not a scan.
    """
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return Kind.IMAGE
    if suffix in DICOM_EXTENSIONS:
        return Kind.DICOM
    if path.name.upper() == "DICOMDIR":
        return None
    return Kind.MAYBE_DICOM


def has_dicom_marker(head: bytes) -> bool:
    """Whether a file's first DICOM_MARKER_END bytes (or more) mark it as DICOM Part 10."""
    return head[DICOM_MARKER_END - 4 : DICOM_MARKER_END] == b"DICM"


def image_format(head: bytes) -> str | None:
    """JPEG, PNG, TIFF or BMP by the signature the bytes start with; None for anything else."""
    for signature, name in SIGNATURES:
        if head.startswith(signature):
            return name
    return None
