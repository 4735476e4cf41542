"""DICOM files as tests build them.

A PACS export of a grey image, the same data set without its Part 10 header; pydicom's own test files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DigitalXRayImageStorageForPresentation

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"  # odd and ordinary DICOMs pydicom ships for its tests


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 8,
    compress: str = "",
    **attributes: object,
) -> Path:
    """A frontal DX radiograph as a PACS would export it, with ATTRIBUTES set or overriding."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.Modality, ds.ViewPosition = "DX", "PA"
    ds.PatientName, ds.PatientID, ds.AccessionNumber = "Doe^Jane", "PID-4711", "ACC-0042"
    ds.set_pixel_data(pixels, photometric, bits_stored)
    for name, value in attributes.items():
        setattr(ds, name, value)
    if compress:
        ds.compress(compress)
    ds.save_as(path, enforce_file_format=True)
    return path


def without_part10_header(
    part10: Path, path: Path, implicit_vr: bool, little_endian: bool, keep_meta: bool = False
) -> Path:
    """The data set of PART10 as older archives write it.

    No preamble, no DICM marker, no file meta (or meta, unmarked).
    """
    ds = pydicom.dcmread(part10)
    ds.preamble = None
    if keep_meta:
        ds.save_as(path, enforce_file_format=False)
    else:
        del ds.file_meta
        if not little_endian:  # pydicom writes the pixel data's bytes as they are
            ds.PixelData = np.frombuffer(ds.PixelData, "<u2").astype(">u2").tobytes()
        pydicom.dcmwrite(
            path,
            ds,
            enforce_file_format=False,
            implicit_vr=implicit_vr,
            little_endian=little_endian,
            force_encoding=True,
        )
    assert path.read_bytes()[128:132] != b"DICM"
    return path
