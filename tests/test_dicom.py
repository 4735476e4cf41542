"""DICOM: files built here from a real scan with pydicom decode as a viewer shows them, score as the
source does, are filtered by Modality and view, carry opt-in tags; pydicom's own odd files are rows with errors."""

from __future__ import annotations

import csv
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pydicom.data
import pytest
from conftest import FULLRES, real_scans
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    MPEG2MPML,
    DigitalXRayImageStorageForPresentation,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)
from typer.testing import CliRunner

from xscan.cli import app
from xscan.decode import ScanError, decode
from xscan.dicom import DicomOptions, parse_tag_names, read_grey
from xscan.resume import RESULT_COLUMNS
from xscan.scoring import load_scan
from xscan.walk import find_scans

ODD_FILES = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent


# ---- fixtures: DICOM files written from a real full-resolution scan

@pytest.fixture(scope="module")
def source() -> np.ndarray:
    """A real full-resolution scan (704 x 1176), stretched over 0..255 as a DICOM without a VOI is."""
    grey = cv2.imread(str(real_scans("PNEUMONIA", 1, FULLRES)[0]), cv2.IMREAD_GRAYSCALE)
    return cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX)


def write_dicom(
    path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 8,
    compress: str = "", **attributes: object,
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


def with_junk_high_bits(ds_path: Path, stored: np.ndarray) -> Path:
    """Overwrite the pixel data so the 4 unused high bits of each 16-bit word are set (old overlay bits)."""
    ds = pydicom.dcmread(ds_path)
    ds.PixelData = (stored | 0xF000).astype("<u2").tobytes()
    ds.save_as(ds_path)
    return ds_path


def jpeg_baseline(path: Path, grey: np.ndarray) -> tuple[Path, np.ndarray]:
    """A JPEG Baseline DICOM encapsulating OpenCV's JPEG bytes, and what OpenCV decodes from those bytes."""
    encoded = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    ds = pydicom.dcmread(write_dicom(path, grey))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([encoded])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path, cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_GRAYSCALE)


def linear_window(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip((values - low) / (high - low) * 255.0, 0, 255)


# Each case: name -> (tmp folder, source) -> (DICOM path, the grey image a viewer shows).
Case = Callable[[Path, np.ndarray], tuple[Path, np.ndarray]]
FAITHFUL: dict[str, Case] = {
    "monochrome2 8-bit": lambda d, s: (write_dicom(d / "m2.dcm", s), s),
    "monochrome1 8-bit": lambda d, s: (write_dicom(d / "m1.dcm", 255 - s, "MONOCHROME1"), s),
    "12-bit in 16, junk high bits": lambda d, s: (
        with_junk_high_bits(write_dicom(d / "b12.dcm", s.astype(np.uint16) * 16, bits_stored=12), s.astype(np.uint16) * 16), s),
    "monochrome1 12-bit with rescale": lambda d, s: (write_dicom(
        d / "m1r.dcm", (255 - s).astype(np.uint16) * 16, "MONOCHROME1", 12, RescaleSlope=0.5, RescaleIntercept=-1024), s),
    "modality LUT sequence": lambda d, s: (modality_lut_file(d / "mlut.dcm", s), s),
    "RLE lossless 8-bit": lambda d, s: (write_dicom(d / "rle8.dcm", s, compress=RLELossless), s),
    "RLE lossless 12-bit": lambda d, s: (write_dicom(d / "rle12.dcm", s.astype(np.uint16) * 16, bits_stored=12, compress=RLELossless), s),
    "JPEG 2000 lossless 12-bit": lambda d, s: (
        write_dicom(d / "j2k.dcm", s.astype(np.uint16) * 16, bits_stored=12, compress=JPEG2000Lossless), s),
    "JPEG baseline": lambda d, s: jpeg_baseline(d / "jpeg.dcm", s),
}
WINDOWED: dict[str, Case] = {
    # The window selects grey levels 64..192 of the source, i.e. stored values 1024..3072.
    "linear window": lambda d, s: (write_dicom(
        d / "win.dcm", s.astype(np.uint16) * 16, bits_stored=12, WindowCenter=2048, WindowWidth=2048),
        linear_window(s * 16.0, 1024, 3072)),
    # The window is in rescaled units (-1024 + 2 * stored): right only if the rescale comes first.
    "window after rescale": lambda d, s: (write_dicom(
        d / "rwin.dcm", s.astype(np.uint16) * 16, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1024,
        WindowCenter=3072, WindowWidth=4096), linear_window(s * 16.0, 1024, 3072)),
    "sigmoid window": lambda d, s: (write_dicom(
        d / "sig.dcm", s.astype(np.uint16) * 16, bits_stored=12, WindowCenter=2048, WindowWidth=1024, VOILUTFunction="SIGMOID"),
        255.0 / (1 + np.exp(-4 * (s * 16.0 - 2048) / 1024))),
    "VOI LUT sequence over a window": lambda d, s: voi_lut_file(d / "voi.dcm", s),
}


def modality_lut_file(path: Path, grey: np.ndarray) -> Path:
    """Stored values inverted, with a Modality LUT Sequence that inverts them back."""
    lut = Dataset()
    lut.add_new("LUTDescriptor", "US", [4096, 0, 16])
    lut.add_new("LUTData", "OW", (4095 - np.arange(4096)).astype("<u2").tobytes())
    return write_dicom(path, (4095 - grey.astype(np.uint16) * 16), bits_stored=12, ModalityLUTSequence=[lut])


def voi_lut_file(path: Path, grey: np.ndarray) -> tuple[Path, np.ndarray]:
    """A gamma curve as VOI LUT, which wins over the window also present."""
    table = np.round(1000 * (np.arange(4096) / 4095) ** 0.5).astype(np.uint16)
    lut = Dataset()
    lut.add_new("LUTDescriptor", "US", [4096, 0, 16])
    lut.add_new("LUTData", "OW", table.astype("<u2").tobytes())
    dicom = write_dicom(path, grey.astype(np.uint16) * 16, bits_stored=12, VOILUTSequence=[lut], WindowCenter=100, WindowWidth=10)
    return dicom, table[grey.astype(np.int64) * 16] * (255.0 / 1000)


@pytest.mark.parametrize("case", list(FAITHFUL) + list(WINDOWED))
def test_decoded_like_a_viewer_within_one_grey_level(case: str, tmp_path: Path, source: np.ndarray) -> None:
    path, expected = {**FAITHFUL, **WINDOWED}[case](tmp_path, source)
    grey = decode(path)
    assert grey.dtype == np.uint8 and grey.shape == source.shape
    assert np.abs(grey.astype(np.int16) - np.round(expected).astype(np.int16)).max() <= 1


def test_scores_match_the_source_within_0_01(tmp_path: Path, source: np.ndarray, scorer) -> None:
    cv2.imwrite(str(tmp_path / "source.png"), source)
    paths = [tmp_path / "source.png"] + [case(tmp_path, source)[0] for case in FAITHFUL.values()]
    loaded = [load_scan(path, scorer.card.image_size) for path in paths]
    assert all(item.error == "" for item in loaded), [item.error for item in loaded]
    probabilities = scorer.probabilities(np.stack([item.scan for item in loaded]))
    assert np.abs(probabilities[1:] - probabilities[0]).max() <= 0.01


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_compressed_and_other_encodings_of_one_image_decode_alike(name: str) -> None:
    """pydicom ships one MR slice in several transfer syntaxes, JPEG-LS among them."""
    assert np.array_equal(read_grey(ODD_FILES / name), read_grey(ODD_FILES / "MR_small.dcm"))


def test_multi_frame_scores_the_first_frame(tmp_path: Path, source: np.ndarray) -> None:
    frames = np.stack([source, 255 - source])
    assert np.array_equal(decode(write_dicom(tmp_path / "two.dcm", frames, NumberOfFrames=2)), source)


def test_colour_is_converted_to_grey(tmp_path: Path, source: np.ndarray) -> None:
    rgb = np.stack([source] * 3, axis=-1)
    assert np.abs(decode(write_dicom(tmp_path / "rgb.dcm", rgb, "RGB")).astype(int) - source).max() <= 1


# ---- broken and undecodable files

def test_undecodable_transfer_syntax_is_a_clear_error(tmp_path: Path, source: np.ndarray) -> None:
    ds = pydicom.dcmread(write_dicom(tmp_path / "mpeg.dcm", source, compress=RLELossless))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.save_as(tmp_path / "mpeg.dcm", enforce_file_format=True)
    with pytest.raises(ScanError, match="transfer syntax MPEG2 .* cannot be decoded"):
        decode(tmp_path / "mpeg.dcm")


def test_rle_data_that_overruns_the_frame_is_a_scan_error_not_a_panic(tmp_path: Path) -> None:
    """pylibjpeg-rle (Rust) panics on this; a panic must not end the run."""
    path = write_dicom(tmp_path / "overrun.dcm", np.zeros((64, 64), np.uint16), bits_stored=16)
    ds = pydicom.dcmread(path)
    segment = bytes([0x81, 200]) * 40  # 40 runs of 128 bytes, more than the 64 x 64 frame holds
    header = struct.pack("<16L", 2, 64, 64 + len(segment), *[0] * 13)
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.PixelData = encapsulate([header + segment + segment])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ScanError, match="corrupt DICOM pixel data"):
        decode(path)


@pytest.mark.parametrize("path", sorted(ODD_FILES.glob("*.dcm")), ids=lambda p: p.name)
def test_every_bundled_pydicom_file_decodes_or_is_a_scan_error(path: Path) -> None:
    try:
        grey = read_grey(path)
    except ScanError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert grey.ndim == 2 and grey.dtype == np.uint8


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(0.0, 0.999))
def test_a_truncated_file_is_a_scan_error_or_lost_nothing(fraction: float, tmp_path: Path) -> None:
    """Cutting the tail of RLE data may only cut run padding: then the image must be whole, else a ScanError."""
    whole = (ODD_FILES / "MR_small_RLE.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(whole[: int(len(whole) * fraction)])
    try:
        grey = read_grey(cut)
    except ScanError:
        return
    assert np.array_equal(grey, read_grey(ODD_FILES / "MR_small_RLE.dcm"))


# ---- filtering by Modality and view

@pytest.mark.parametrize(("attributes", "reason"), [
    ({"Modality": "CT"}, "skipped: Modality CT, not a radiograph"),
    ({"Modality": ""}, "skipped: Modality missing, not a radiograph"),
    ({"ViewPosition": "LL"}, "skipped: lateral view (ViewPosition LL)"),
    ({"ViewPosition": "", "ViewCodeSequence": [Dataset()]}, "skipped: lateral view (ViewCodeSequence left lateral)"),
])
def test_non_radiographs_and_laterals_are_skipped_unless_the_filter_is_off(
    attributes: dict, reason: str, tmp_path: Path, source: np.ndarray,
) -> None:
    for item in attributes.get("ViewCodeSequence", []):
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "R-10236", "SRT", "left lateral"
    path = write_dicom(tmp_path / "film.dcm", source, **attributes)
    assert load_scan(path, 160).error == reason
    unfiltered = load_scan(path, 160, DicomOptions(filter=False))
    assert unfiltered.error == "" and unfiltered.scan is not None


# ---- the walk and the command line

def test_walk_finds_dicom_by_extension_and_by_marker(tmp_path: Path, source: np.ndarray) -> None:
    write_dicom(tmp_path / "upper.DCM", source)
    write_dicom(tmp_path / "1.2.840.113619.2.55.3.100", source)  # named by UID: suffix ".100"
    write_dicom(tmp_path / "IM0001", source)
    write_dicom(tmp_path / "DICOMDIR", source)  # an export's index, not a scan
    (tmp_path / "README").write_bytes(b"x" * 128 + b"DICX")
    names = [path.name for path in find_scans(tmp_path).scans]
    assert names == ["1.2.840.113619.2.55.3.100", "IM0001", "upper.DCM"]
    assert np.array_equal(decode(tmp_path / "IM0001"), source)


@pytest.fixture
def export(tmp_path: Path, source: np.ndarray) -> Path:
    """A PACS-like export: a frontal DX, an extension-less CR, a CT slice and a lateral film."""
    folder = tmp_path / "export"
    folder.mkdir()
    write_dicom(folder / "frontal.dcm", source)
    write_dicom(folder / "IM0002", source, Modality="CR", AccessionNumber="ACC-0043")
    write_dicom(folder / "ct.dcm", source, Modality="CT")
    write_dicom(folder / "lateral.dcm", source, ViewPosition="LL")
    return folder


def run_score(folder: Path, *options: str) -> tuple[int, list[dict[str, str]], list[str]]:
    out = folder.parent / "results.csv"
    result = CliRunner().invoke(app, ["score", str(folder), "-o", str(out), "--quiet", *options])
    with open(out, newline="") as stream:
        header = next(csv.reader(stream))
    with open(out, newline="") as stream:
        rows = list(csv.DictReader(stream))
    return result.exit_code, rows, header


def test_cli_skips_ct_and_lateral_with_reasons(export: Path) -> None:
    code, rows, header = run_score(export)
    errors = {Path(row["path"]).name: row["error"] for row in rows}
    assert code == 1 and tuple(header) == RESULT_COLUMNS
    assert errors == {"IM0002": "", "ct.dcm": "skipped: Modality CT, not a radiograph",
                      "frontal.dcm": "", "lateral.dcm": "skipped: lateral view (ViewPosition LL)"}


def test_cli_no_dicom_filter_scores_them(export: Path) -> None:
    code, rows, _ = run_score(export, "--no-dicom-filter")
    assert code == 0 and len(rows) == 4
    assert all(row["error"] == "" and 0.0 <= float(row["probability"]) <= 1.0 for row in rows)


def test_cli_dicom_tags_are_opt_in_extra_columns(export: Path) -> None:
    _, rows, header = run_score(export, "--dicom-tags", "AccessionNumber,SOPInstanceUID")
    assert tuple(header) == (*RESULT_COLUMNS, "AccessionNumber", "SOPInstanceUID")
    accession = {Path(row["path"]).name: row["AccessionNumber"] for row in rows}
    assert accession == {"IM0002": "ACC-0043", "ct.dcm": "ACC-0042", "frontal.dcm": "ACC-0042", "lateral.dcm": "ACC-0042"}
    assert all(row["SOPInstanceUID"].startswith("1.2.") for row in rows)


def test_cli_writes_no_patient_identifiers_by_default(export: Path) -> None:
    run_score(export)
    text = (export.parent / "results.csv").read_text()
    assert "Doe^Jane" not in text and "PID-4711" not in text and "ACC-00" not in text


def test_cli_rejects_unknown_dicom_tags(export: Path) -> None:
    result = CliRunner().invoke(app, ["score", str(export), "-o", "-", "--dicom-tags", "AccessionNumbr"])
    assert result.exit_code == 2 and "AccessionNumbr" in result.output


def test_parse_tag_names_refuses_sequences_and_repeats() -> None:
    assert parse_tag_names(" AccessionNumber , StudyDate,") == ("AccessionNumber", "StudyDate")
    for text in ("ViewCodeSequence", "PixelData", "StudyDate,StudyDate"):
        with pytest.raises(ValueError):
            parse_tag_names(text)


ODD = ["MR_truncated.dcm", "no_meta.dcm", "rtplan.dcm", "meta_missing_tsyntax.dcm", "badVR.dcm", "JPEG-lossy.dcm",
       "JPEG2000-embedded-sequence-delimiter.dcm", "ExplVR_BigEndNoMeta.dcm"]


def test_cli_odd_pydicom_files_are_error_rows_and_the_run_continues(export: Path) -> None:
    for name in ODD:
        shutil.copy(ODD_FILES / name, export / f"odd-{name}")
    code, rows, _ = run_score(export, "--no-dicom-filter")
    errors = {Path(row["path"]).name: row["error"] for row in rows}
    assert code == 1 and len(rows) == 4 + len(ODD)
    assert all(errors[f"odd-{name}"] for name in ODD), errors
    assert all(errors[name] == "" for name in ("frontal.dcm", "IM0002", "ct.dcm", "lateral.dcm"))
