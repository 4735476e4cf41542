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
# A data set written without the Part 10 header (older archives) starts with its first element: the file meta
# group 0002 (written without preamble) or the identifying group 0008, little or big endian.
HEADERLESS_FIRST_GROUPS = frozenset({0x0002, 0x0008})
VALUE_REPRESENTATIONS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
IMPLICIT_FIRST_LENGTH_LIMIT = 1024  # group 0008's first elements are short strings and UIDs


class Kind(Enum):
    """What a file is, as its name says (the bytes confirm a DICOM)."""

    IMAGE = "image"  # decoded by OpenCV
    DICOM = "dicom"  # decoded by pydicom
    MAYBE_DICOM = "maybe DICOM"  # no known extension: a DICOM if its first bytes carry the marker


def kind_by_name(path: Path) -> Kind:
    """Tell the kind a file's name says it is.

    PACS exports often name DICOM files by UID or not at all, so a name without a known image
    extension leaves the question to the file's first bytes (`looks_like_dicom`). A DICOMDIR is
    such a file too: its content, an index without an image, decides what becomes of it.

    Args:
        path: The file.

    Returns:
        IMAGE or DICOM by the extension, else MAYBE_DICOM.
    """
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return Kind.IMAGE
    if suffix in DICOM_EXTENSIONS:
        return Kind.DICOM
    return Kind.MAYBE_DICOM


def looks_like_dicom(head: bytes) -> bool:
    """Tell whether a file's first bytes are DICOM's: the Part 10 marker, or a data set without it.

    Args:
        head: The file's first DICOM_MARKER_END bytes (or more).

    Returns:
        True for a DICOM file.
    """
    return has_dicom_marker(head) or starts_with_data_element(head)


def has_dicom_marker(head: bytes) -> bool:
    """Tell whether a file's first bytes mark it as DICOM Part 10.

    Args:
        head: The file's first DICOM_MARKER_END bytes (or more).

    Returns:
        True when b"DICM" follows the 128-byte preamble.
    """
    return head[DICOM_MARKER_END - 4 : DICOM_MARKER_END] == b"DICM"


def starts_with_data_element(head: bytes) -> bool:
    """Whether the bytes start like a DICOM data set written without the Part 10 header.

    A cheap check before pydicom is asked to parse a file that lacks the preamble and marker: the
    first element is in group 0002 or 0008 (either byte order) and carries a known value
    representation (explicit VR) or a short even length (implicit VR).

    Args:
        head: The file's first bytes (8 at least are needed).

    Returns:
        True when they start like such a data set.
    """
    if len(head) < 8:
        return False
    for order in ("little", "big"):
        if int.from_bytes(head[0:2], order) in HEADERLESS_FIRST_GROUPS:
            if head[4:6] in VALUE_REPRESENTATIONS:
                return True
            length = int.from_bytes(head[4:8], order)
            return order == "little" and length % 2 == 0 and length <= IMPLICIT_FIRST_LENGTH_LIMIT
    return False


def image_format(head: bytes) -> str | None:
    """Tell an image's format by the signature its bytes start with.

    Args:
        head: The file's first bytes.

    Returns:
        JPEG, PNG, TIFF or BMP; None for anything else.
    """
    for signature, name in SIGNATURES:
        if head.startswith(signature):
            return name
    return None
