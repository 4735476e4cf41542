"""Which DICOM files are scored: images, and of those frontal radiographs only, judged from the header alone."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import UID

PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL"})  # ViewPosition values that mean a lateral film

NO_SOP_CLASS = "no SOP class"
# A damaged header: its bytes are not a UID, and a cell would show them raw.
INVALID_SOP_CLASS = "SOP class UID not valid"


def no_image_reason(ds: Dataset) -> str:
    """Say why a dataset holds no image at all: a DICOMDIR, a report, an RT plan, a waveform.

    Such files are part of an export like the images, so they are skipped, whatever the filter.

    Args:
        ds: The dataset, header only.

    Returns:
        The reason, naming the SOP class; "" when the dataset holds an image.
    """
    if any(keyword in ds for keyword in PIXEL_DATA_KEYWORDS):
        return ""
    return f"no image ({sop_class_name(ds).removesuffix(' Storage')})"


def sop_class_name(ds: Dataset) -> str:
    """Say what a dataset is, by its SOP class.

    Args:
        ds: The dataset; its SOPClassUID, else its file meta's MediaStorageSOPClassUID.

    Returns:
        The class's name (`Basic Text SR Storage`), the UID itself where pydicom does not know it,
        NO_SOP_CLASS or INVALID_SOP_CLASS.
    """
    meta = getattr(ds, "file_meta", None) or {}
    uid = ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID")
    if not uid:
        return NO_SOP_CLASS
    uid = UID(str(uid))
    if not uid.is_valid:
        return INVALID_SOP_CLASS
    return uid.name


def skip_reason(ds: Dataset) -> str:
    """Say why a dataset is not a frontal chest radiograph.

    Args:
        ds: The dataset, header only.

    Returns:
        The reason (the modality, a lateral view), or "" when nothing says it is not one.
    """
    modality = str(ds.get("Modality", "")).strip().upper()
    if modality not in RADIOGRAPH_MODALITIES:
        return f"Modality {modality or 'missing'}, not a radiograph"
    view = str(ds.get("ViewPosition", "")).strip().upper()
    if view in LATERAL_VIEWS:
        return f"lateral view (ViewPosition {view})"
    for item in ds.get("ViewCodeSequence", []):
        meaning = str(item.get("CodeMeaning", "")).strip()
        if "lateral" in meaning.lower():
            return f"lateral view (ViewCodeSequence {meaning})"
    return ""
