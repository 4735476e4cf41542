"""A scored file's DICOM header, read again without pixels: what groups it into a study and what its report copies."""

from __future__ import annotations

from pathlib import Path

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

from xscan.errors import ScanError
from xscan.input.decode import open_scan
from xscan.input.dicom.image import PYDICOM_ERRORS
from xscan.input.dicom.policy import PIXEL_DATA_KEYWORDS
from xscan.input.formats import Kind


def read_header(path: Path) -> Dataset | None:
    """The data set of the DICOM file at PATH without its pixel data; None for another file or one unreadable now.

    Every other value is read while the file is open (large ones are deferred by the reader), so
    the header outlives the file.
    """
    try:
        with open_scan(path) as scan:
            if scan.kind is not Kind.DICOM:
                return None
            dataset = scan.dataset()
            header = Dataset()
            header.file_meta = dataset.file_meta
            for tag in list(dataset.keys()):
                if keyword_for_tag(tag) not in PIXEL_DATA_KEYWORDS:  # checked on the tag: the pixels are never read
                    header.add(dataset[tag])
            return header
    except (ScanError, *PYDICOM_ERRORS):
        return None  # its row says why it was not scored, or it has changed since: it joins no study
