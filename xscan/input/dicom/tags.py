"""DICOM tags as extra CSV columns (`--dicom-tags`): which keywords may be columns, and their values as cells."""

from __future__ import annotations

from pydicom import datadict
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from xscan.errors import OptionError

# Value representations that cannot be written as a short CSV cell.
_NOT_A_CELL = frozenset({"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "UN"})


def parse_tag_names(text: str) -> tuple[str, ...]:
    """Read the `--dicom-tags` option: DICOM keywords checked against the data dictionary.

    Args:
        text: Comma-separated keywords (`AccessionNumber,SOPInstanceUID`).

    Returns:
        The keywords, in the order given.

    Raises:
        OptionError: A name is not a keyword, is a sequence or binary element, or is named twice.
    """
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        tag = datadict.tag_for_keyword(name)
        if tag is None:
            raise OptionError(f"{name!r} is not a DICOM keyword (for example AccessionNumber, SOPInstanceUID)")
        if _NOT_A_CELL.intersection(datadict.dictionary_VR(tag).split(" or ")):  # e.g. "OB or OW"
            raise OptionError(f"{name} is a sequence or binary element and cannot be a CSV column")
    if len(set(names)) != len(names):
        raise OptionError(f"a DICOM tag is named twice in {text!r}")
    return names


def tag_values(ds: Dataset, names: tuple[str, ...]) -> dict[str, str]:
    """Read the named tags' values as CSV cells.

    Args:
        ds: The dataset.
        names: DICOM keywords.

    Returns:
        Each tag's value as a cell, by keyword; "" where a tag is absent.
    """
    return {name: _cell(ds.get(name)) for name in names}


def blank_tags(names: tuple[str, ...]) -> dict[str, str]:
    """Give the tags' cells of a file whose header could not be read.

    Args:
        names: DICOM keywords.

    Returns:
        An empty cell for each keyword.
    """
    return dict.fromkeys(names, "")


def _cell(value: object) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(item) for item in value)  # DICOM's own separator for multiple values
    return str(value)
