"""DICOM tags as extra CSV columns (`--dicom-tags`): which keywords may be columns, and their values as cells."""

from __future__ import annotations

from pydicom import datadict
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from xscan.errors import OptionError

# Value representations that cannot be written as a short CSV cell.
_NOT_A_CELL = frozenset({"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "UN"})


def parse_tag_names(text: str) -> tuple[str, ...]:
    """Comma-separated DICOM keywords (`AccessionNumber,SOPInstanceUID`) checked against the data dictionary."""
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
    """The value of each tag in NAMES as a CSV cell, by keyword; "" where a tag is absent."""
    return {name: _cell(ds.get(name)) for name in names}


def blank_tags(names: tuple[str, ...]) -> dict[str, str]:
    """The cells of NAMES for a file whose header could not be read."""
    return dict.fromkeys(names, "")


def _cell(value: object) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(item) for item in value)  # DICOM's own separator for multiple values
    return str(value)
