"""A DICOM Part 10 file as a viewer shows it: parsed once, its first frame turned into uint8 grey.

The order of operations follows the DICOM grey-scale pipeline (PS3.4 N.2): stored pixel values
(BitsStored respected, unused high bits masked by pydicom) -> modality LUT (Rescale Slope and
Intercept, or a Modality LUT Sequence) -> VOI (a VOI LUT Sequence, else the first Window
Center/Width with its VOI LUT Function) -> MONOCHROME1 inverted so that bone is bright ->
uint8. After that a DICOM is a grey image like any other and goes through the same `preprocess`.

The errors pydicom raises on a broken file (`PYDICOM_ERRORS`), and any exception that comes from
pydicom, its plugins or numpy while they read or decode (`xscan.input.damage`: pydicom says
"Missing required element" with an AttributeError), are turned into ScanError by this module's
functions or, for header values, where they are read. An exception from xscan's own code (a
TypeError, AttributeError or KeyError: a bug) and a MemoryError (no property of one file) stop the
run (exit 3) rather than fill a night with error rows; so the header values this module itself
uses (Rows, Columns, the transfer syntax, ...) are checked to be one value of their type before use.

Pixels are read from the open file (`pixel_array(stream, index=0)`), not through the parsed
dataset, whose pixel data would be read whole: a multi-frame file gives its first frame only, and
a frame's size (Rows x Columns x SamplesPerPixel x BitsAllocated) is checked before it is read.
(Deflated files, and files encoded otherwise than their transfer syntax says, are the exceptions:
see `_frame_readable_from_file`.)
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, get_frame
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder, pixel_array
from pydicom.pixels.processing import apply_voi, apply_windowing
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
)

from xscan.errors import ScanError, one_line
from xscan.input.damage import decoding
from xscan.input.dicom.jpeg import repaired_scan_headers
from xscan.input.dicom.policy import INVALID_SOP_CLASS, NO_SOP_CLASS, sop_class_name
from xscan.input.limits import MAX_FRAME_BYTES, MAX_PIXELS
from xscan.input.native_messages import noting

MONOCHROME = frozenset({"MONOCHROME1", "MONOCHROME2"})
# Values larger than this stay in the file until used: a DICOM skipped by its header never has its pixels read.
DEFER_BYTES = 64 * 1024
# What pydicom and its decoder plugins raise on truncated, malformed or undecodable files (there is
# no single base class): malformed values, short reads, unsupported encodings, decoder failures.
PYDICOM_ERRORS = (
    InvalidDicomError,
    BytesLengthException,
    EOFError,
    OSError,
    ValueError,
    IndexError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    struct.error,
)
# pylibjpeg and its plugins, installed with xscan, decode every compressed syntax xscan reads. pydicom would
# otherwise try whatever else is installed too (GDCM, Pillow), so that results would hang on optional packages.
DECODING_PLUGIN = "pylibjpeg"
# The transfer syntax of a data set without file meta information is its encoding: (implicit VR, little endian).
SYNTAX_OF_ENCODING = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}


def read_dataset(stream: BinaryIO) -> Dataset:
    """Parse an open DICOM Part 10 file.

    Args:
        stream: The file, open for binary reading at its start; pixel data and other large values
            are read from it when first used.

    Returns:
        The dataset.

    Raises:
        ScanError: The file is not DICOM Part 10, or is damaged.
    """
    with decoding("unreadable DICOM file", PYDICOM_ERRORS):
        try:
            return pydicom.dcmread(stream, defer_size=DEFER_BYTES)
        except InvalidDicomError:
            raise ScanError("not a DICOM Part 10 file (no DICM marker at byte 128)") from None


def read_headerless_dataset(stream: BinaryIO) -> Dataset:
    """Parse an open DICOM data set written without the Part 10 preamble and marker, as some older archives do.

    Only called once the first bytes look like a data element (`formats.starts_with_data_element`).
    Without file meta information, the encoding pydicom found is the transfer syntax: such a file
    cannot say that its pixel data is compressed.

    Args:
        stream: The file, open for binary reading at its start.

    Returns:
        The dataset, with a transfer syntax in its file meta.

    Raises:
        ScanError: No data element could be read, or the file is damaged.
    """
    with decoding("unreadable DICOM file", PYDICOM_ERRORS):
        ds = pydicom.dcmread(stream, defer_size=DEFER_BYTES, force=True)
        if "TransferSyntaxUID" not in ds.file_meta:
            syntax = SYNTAX_OF_ENCODING.get(ds.original_encoding)
            if syntax is None:
                raise ScanError("unreadable DICOM file: no data element could be read")
            ds.file_meta.TransferSyntaxUID = syntax
    return ds


def grey_image(ds: Dataset, stream: BinaryIO) -> np.ndarray:
    """Turn the first frame of a dataset into a 2-D uint8 grey image, bone bright, as a viewer would show it.

    Without a VOI (no VOI LUT and no window) the values after the modality LUT are stretched over
    their own range, minimum to maximum, not over the stored bit range: detectors often declare 16
    bits stored and fill 12 or 14 of them, and after a rescale the bit range no longer describes
    the values at all, so a bit-range scale would crush the image into a few dozen grey levels.
    Its own range keeps every level it has; the absolute exposure it drops is removed anyway by
    the histogram equalization in `preprocess`. A 16-bit PNG is scaled the same way.

    Multi-frame files: only the first frame is read, from the open file. Colour files (RGB, YBR,
    palette) are converted to grey by luma; LUTs apply to grey images only, as the standard says.

    Args:
        ds: The dataset, as `read_dataset` parsed it.
        stream: The open file `ds` was parsed from.

    Returns:
        The first frame as a 2-D uint8 grey array.

    Raises:
        ScanError: The pixel data is missing, too large, of a syntax xscan cannot decode, or damaged.
    """
    with decoding("cannot decode DICOM pixel data", PYDICOM_ERRORS):
        frame = _first_frame(ds, stream)
        if header_value(ds, "PhotometricInterpretation", str) in MONOCHROME:
            return _monochrome_to_uint8(frame, ds)
        return _colour_to_grey(frame, ds)


def _first_frame(ds: Dataset, stream: BinaryIO) -> np.ndarray:
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise ScanError("DICOM float pixel data cannot be scored (a parametric map, not a radiograph)")
        name = sop_class_name(ds)
        what = name if name in (NO_SOP_CLASS, INVALID_SOP_CLASS) else f"SOP class {name}"
        raise ScanError(f"DICOM without pixel data ({what})")
    for name in ("Rows", "Columns", "PhotometricInterpretation", "BitsAllocated"):
        if name not in ds:
            raise ScanError(f"DICOM image without {name}")
    check_frame_size(ds)
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if not syntax:
        raise ScanError("DICOM file without a transfer syntax")
    if not isinstance(syntax, UID):
        raise ScanError(f"DICOM transfer syntax is not one UID ({syntax})")
    if syntax.is_compressed and not _decodable(syntax):
        raise ScanError(f"DICOM transfer syntax {syntax.name} ({syntax}) cannot be decoded")
    try:
        if not syntax.is_encapsulated:
            source = stream if _frame_readable_from_file(ds, syntax) else ds
            return noting(f"pixel data ({syntax.name})", lambda: _rewound(source, lambda: pixel_array(source, index=0)))
        _repair_jpeg_scan_header(ds, syntax)
        return noting(f"pixel data ({syntax.name})", lambda: pixel_array(ds, index=0, decoding_plugin=DECODING_PLUGIN))
    except BaseException as error:
        # pylibjpeg-rle is Rust: on corrupt data it panics, and pyo3's PanicException derives from BaseException.
        if type(error).__name__ != "PanicException":
            raise
        raise ScanError(f"corrupt DICOM pixel data: the {syntax.name} decoder failed ({one_line(error)})") from None


def _rewound(source: Dataset | BinaryIO, read: Callable[[], np.ndarray]) -> np.ndarray:
    """Call `read` on `source`, from where the stream stands now, however often it is called.

    A decode is repeated to tell its messages, so each call starts where the first did.
    """
    if isinstance(source, Dataset):
        return read()
    start = source.tell()
    try:
        return read()
    finally:
        source.seek(start)


def _frame_readable_from_file(ds: Dataset, syntax: UID) -> bool:
    """Whether pydicom can read the first frame alone from the file, as the transfer syntax describes it.

    Not for a deflated file (pydicom inflates it whole to parse it), nor for one whose encoding
    differs from what its transfer syntax says (dcmread notices; a read from the file does not):
    those two are read through the dataset, within the file-size limit.
    """
    if ds.preamble is None:
        # Read without the Part 10 header (force=True): pydicom reads such a file only as a dataset.
        return False
    element = ds.get_item("PixelData", keep_deferred=True)  # as read, not converted (nor read): its encoding
    encoding = (
        (element.is_implicit_VR, element.is_little_endian)
        if isinstance(element, RawDataElement)
        else ds.original_encoding
    )
    return syntax != DeflatedExplicitVRLittleEndian and encoding == (syntax.is_implicit_VR, syntax.is_little_endian)


def check_frame_size(ds: Dataset) -> None:
    """Refuse a frame that would be too large, from its header alone, before any pixel is read or decoded.

    Args:
        ds: The dataset.

    Raises:
        ScanError: The frame has more than MAX_PIXELS pixels or MAX_FRAME_BYTES bytes, or a size
            element is missing or not one whole number.
    """
    rows, columns = header_value(ds, "Rows", int), header_value(ds, "Columns", int)
    samples, bits = header_value(ds, "SamplesPerPixel", int, 1), header_value(ds, "BitsAllocated", int)
    if rows * columns > MAX_PIXELS:
        raise ScanError(f"DICOM frame too large ({columns}x{rows} pixels; limit {MAX_PIXELS // 1_000_000} megapixels)")
    frame_bytes = rows * columns * samples * bits // 8
    if frame_bytes > MAX_FRAME_BYTES:
        raise ScanError(
            f"DICOM frame too large ({columns}x{rows} pixels x {samples} samples x {bits} bits = "
            f"{frame_bytes >> 20} MiB; limit {MAX_FRAME_BYTES >> 20} MiB)"
        )


def header_value(ds: Dataset, name: str, kind: type, default: object = None) -> Any:
    """Read one header value that xscan itself uses, checked to be one value of its type.

    Args:
        ds: The dataset.
        name: The element's keyword.
        kind: int or str.
        default: The value where the element is absent or empty; None makes it required.

    Returns:
        The value (a whole float as an int).

    Raises:
        ScanError: The element is required and absent, holds several values, or is of another type.
    """
    value = ds.get(name)
    if value is None or value == "":
        if default is None:
            raise ScanError(f"DICOM image without {name}")
        return default
    if isinstance(value, MultiValue | list):
        raise ScanError(f"DICOM {name} holds {len(value)} values, not one")
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, kind):
        raise ScanError(f"DICOM {name} is not {'a whole number' if kind is int else 'text'} ({type(value).__name__})")
    return value


def _decodable(syntax: UID) -> bool:
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:  # pydicom knows no decoder for the syntax at all
        return False
    return decoder.is_native or DECODING_PLUGIN in decoder.available_plugins


def _repair_jpeg_scan_header(ds: Dataset, syntax: UID) -> None:
    """Make the first frame a conformant sequential JPEG where its scan header slips as some encoders' do.

    Some encoders write zeros where a sequential JPEG's scan header must say 0..63 (JPEG-lossy.dcm
    in pydicom's corpus): IJG libjpeg, behind most viewers, warns and reads such a file as if it
    said so, while pylibjpeg refuses it. The repaired frame replaces the dataset's pixel data (its
    only use left), and a warning records the repair.
    """
    if syntax not in (JPEGBaseline8Bit, JPEGExtended12Bit):
        return
    frame = get_frame(ds.PixelData, 0, number_of_frames=header_value(ds, "NumberOfFrames", int, 1))
    repaired = repaired_scan_headers(frame)
    if repaired is None:
        return
    warnings.warn(
        "JPEG scan header not valid for a sequential JPEG (spectral selection not 0..63); read as 0..63, "
        "as IJG libjpeg reads it",
        UserWarning,
        stacklevel=2,
    )
    ds.PixelData = encapsulate([repaired])
    ds.NumberOfFrames = 1


def _monochrome_to_uint8(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    values = apply_modality_lut(frame, ds)
    voi_range = _voi_range(ds)
    if voi_range is None:
        grey = _stretch(values, float(values.min()), float(values.max()))
    else:
        grey = _stretch(_apply_voi(values, ds), *voi_range)
    return 255 - grey if ds.PhotometricInterpretation == "MONOCHROME1" else grey


def _voi_range(ds: Dataset) -> tuple[float, float] | None:
    """What the VOI maps the darkest and the brightest values to: the display's black and white."""
    if ds.get("VOILUTSequence"):
        entries, first, _ = ds.VOILUTSequence[0].LUTDescriptor
        table = apply_voi(np.arange(first, first + (entries or 2**16)), ds)
        return float(table.min()), float(table.max())
    if "WindowCenter" in ds and "WindowWidth" in ds:
        # Below the window maps to the low end, above it to the high end, for every VOI LUT Function.
        black, white = apply_windowing(np.array([-np.inf, np.inf]), ds)
        return float(black), float(white)
    return None


def _apply_voi(values: np.ndarray, ds: Dataset) -> np.ndarray:
    if ds.get("VOILUTSequence") and values.dtype.kind == "f":
        values = np.rint(values).astype(np.int64)  # a LUT is indexed by whole numbers
    return apply_voi_lut(values, ds)


STRETCH_ROWS = 256


def _stretch(values: np.ndarray, black: float, white: float) -> np.ndarray:
    """Map `black` to 0 and `white` to 255 linearly (`black` may exceed `white`), clipping outside."""
    if black == white:
        return np.zeros(values.shape, np.uint8)
    # STRETCH_ROWS rows at a time, in place on one float32 copy: a 2,900-pixel film's four whole-film
    # float32 temporaries took some 130 MB at once.
    grey = np.empty(values.shape, np.uint8)
    factor = np.float32(255.0 / (white - black))
    for top in range(0, values.shape[0], STRETCH_ROWS):
        scaled = values[top : top + STRETCH_ROWS].astype(np.float32)
        scaled -= np.float32(black)
        scaled *= factor
        np.clip(scaled, 0.0, 255.0, out=scaled)
        grey[top : top + STRETCH_ROWS] = np.rint(scaled, out=scaled)
    return grey


def _colour_to_grey(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        frame = apply_color_lut(frame, ds)
    if frame.ndim == 3:
        # pydicom has already turned YBR into RGB; ITU-R BT.601 luma, as OpenCV uses for every other format.
        frame = frame[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return _stretch(frame, float(frame.min()), float(frame.max()))
