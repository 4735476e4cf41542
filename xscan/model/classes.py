"""The two classes the model tells apart, by name; a label's index is its number (1 is the positive class)."""

from __future__ import annotations

from xscan.errors import LabelsError

CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # 0 normal, 1 pneumonia
NEGATIVE, POSITIVE = CLASS_NAMES
OUT_OF_SCOPE = "OUT_OF_SCOPE"  # the label of a scan the model was not built for: neither class

LABEL_VALUES = {NEGATIVE.lower(): 0, "0": 0, POSITIVE.lower(): 1, "1": 1}  # 1 is pneumonia, as in xscan.stats.metrics


def parse_label(text: str) -> int:
    """Read a ground-truth label.

    Args:
        text: NORMAL / PNEUMONIA / 0 / 1, in any case; surrounding spaces are ignored.

    Returns:
        0 for normal, 1 for pneumonia.

    Raises:
        LabelsError: The text is none of these.
    """
    try:
        return LABEL_VALUES[text.strip().lower()]
    except KeyError:
        raise LabelsError(f"label {text!r} is not one of {NEGATIVE}, {POSITIVE}, 0 or 1") from None
