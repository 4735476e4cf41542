"""Which DICOM files are scored: frontal radiographs only, judged from the header before any pixel is read."""

from __future__ import annotations

from pydicom.dataset import Dataset

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL"})  # ViewPosition values that mean a lateral film


def skip_reason(ds: Dataset) -> str:
    """Why a dataset is not a frontal chest radiograph, or "" when nothing says it is not one."""
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
