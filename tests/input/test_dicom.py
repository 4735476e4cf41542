"""DICOM files built here from a real scan with pydicom, and pydicom's own odd files.

They decode as a viewer shows them, score as the source does, are filtered by Modality and view,
carry opt-in tags; pydicom's own odd files are rows with errors.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pydicom.data
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import (
    JPEG2000,
    MPEG2MPML,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    RLELossless,
)
from support.data import FULLRES, real_scans
from support.dicom import PYDICOM_FILES, without_part10_header, write_dicom
from typer.testing import CliRunner

from xscan.cli import app
from xscan.errors import ScanError
from xscan.input.decode import decode
from xscan.input.dicom.jpeg import repaired_scan_headers
from xscan.input.dicom.tags import parse_tag_names
from xscan.input.formats import starts_with_data_element
from xscan.input.walk import find_scans
from xscan.scoring.options import DicomOptions, ScoreOptions
from xscan.scoring.pipeline import load_scan
from xscan.scoring.results import results_columns
from xscan.scoring.run import ScoreSummary, score_folder

# ---- fixtures: DICOM files written from a real full-resolution scan


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    """A real full-resolution scan (704 x 1176), stretched over 0..255 as a DICOM without a VOI is."""
    grey = cv2.imread(str(real_scans("PNEUMONIA", 1, FULLRES)[0]), cv2.IMREAD_GRAYSCALE)
    return cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX)


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
        with_junk_high_bits(
            write_dicom(d / "b12.dcm", s.astype(np.uint16) * 16, bits_stored=12), s.astype(np.uint16) * 16
        ),
        s,
    ),
    "monochrome1 12-bit with rescale": lambda d, s: (
        write_dicom(
            d / "m1r.dcm", (255 - s).astype(np.uint16) * 16, "MONOCHROME1", 12, RescaleSlope=0.5, RescaleIntercept=-1024
        ),
        s,
    ),
    "modality LUT sequence": lambda d, s: (modality_lut_file(d / "mlut.dcm", s), s),
    "RLE lossless 8-bit": lambda d, s: (write_dicom(d / "rle8.dcm", s, compress=RLELossless), s),
    "RLE lossless 12-bit": lambda d, s: (
        write_dicom(d / "rle12.dcm", s.astype(np.uint16) * 16, bits_stored=12, compress=RLELossless),
        s,
    ),
    "JPEG 2000 lossless 12-bit": lambda d, s: (
        write_dicom(d / "j2k.dcm", s.astype(np.uint16) * 16, bits_stored=12, compress=JPEG2000Lossless),
        s,
    ),
    "JPEG baseline": lambda d, s: jpeg_baseline(d / "jpeg.dcm", s),
}
WINDOWED: dict[str, Case] = {
    # The window selects grey levels 64..192 of the source, i.e. stored values 1024..3072.
    "linear window": lambda d, s: (
        write_dicom(d / "win.dcm", s.astype(np.uint16) * 16, bits_stored=12, WindowCenter=2048, WindowWidth=2048),
        linear_window(s * 16.0, 1024, 3072),
    ),
    # The window is in rescaled units (-1024 + 2 * stored): right only if the rescale comes first.
    "window after rescale": lambda d, s: (
        write_dicom(
            d / "rwin.dcm",
            s.astype(np.uint16) * 16,
            bits_stored=12,
            RescaleSlope=2,
            RescaleIntercept=-1024,
            WindowCenter=3072,
            WindowWidth=4096,
        ),
        linear_window(s * 16.0, 1024, 3072),
    ),
    "sigmoid window": lambda d, s: (
        write_dicom(
            d / "sig.dcm",
            s.astype(np.uint16) * 16,
            bits_stored=12,
            WindowCenter=2048,
            WindowWidth=1024,
            VOILUTFunction="SIGMOID",
        ),
        255.0 / (1 + np.exp(-4 * (s * 16.0 - 2048) / 1024)),
    ),
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
    dicom = write_dicom(
        path, grey.astype(np.uint16) * 16, bits_stored=12, VOILUTSequence=[lut], WindowCenter=100, WindowWidth=10
    )
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
    probabilities = scorer.probabilities(np.stack([item.model_input for item in loaded]))
    assert np.abs(probabilities[1:] - probabilities[0]).max() <= 0.01


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ],
)
def test_compressed_and_other_encodings_of_one_image_decode_alike(name: str) -> None:
    """One MR slice pydicom ships in several transfer syntaxes, JPEG-LS among them, decodes alike."""
    assert np.array_equal(decode(PYDICOM_FILES / name), decode(PYDICOM_FILES / "MR_small.dcm"))


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


# The outcome of every odd file pydicom ships: each that is not listed here decodes.
NOT_DECODED = {
    # Its data set starts at byte 1, after a stray byte: neither Part 10 nor a bare data set.
    "no_meta.dcm": "not a DICOM file: no DICM marker at byte 128 and no data set at byte 0",
    **dict.fromkeys(
        ["JPEG2000-embedded-sequence-delimiter.dcm", "MR_truncated.dcm", "badVR.dcm"],
        "cannot decode DICOM pixel data: ",
    ),
    **dict.fromkeys(
        [
            "UN_sequence.dcm",
            "empty_charset_LEI.dcm",
            "no_meta_group_length.dcm",
            "priv_SQ.dcm",
            "reportsi.dcm",
            "reportsi_with_empty_number_tags.dcm",
            "rtplan.dcm",
            "rtplan_truncated.dcm",
            "test-SR.dcm",
            "waveform_ecg.dcm",
            "ExplVR_BigEndNoMeta.dcm",
            "ExplVR_LitEndNoMeta.dcm",
            "rtstruct.dcm",
        ],
        "DICOM without pixel data (",
    ),
    **dict.fromkeys(["meta_missing_tsyntax.dcm", "nested_priv_SQ.dcm"], "DICOM image without Rows"),
    **dict.fromkeys(
        [
            "ExplVR_BigEnd.dcm",
            "JPEGLSNearLossless_08.dcm",
            "JPEGLSNearLossless_16.dcm",
            "SC_rgb_small_odd.dcm",
            "SC_rgb_small_odd_big_endian.dcm",
            "SC_rgb_small_odd_jpeg.dcm",
            "rtdose.dcm",
            "rtdose_1frame.dcm",
            "rtdose_expb.dcm",
            "rtdose_expb_1frame.dcm",
            "rtdose_rle.dcm",
            "rtdose_rle_1frame.dcm",
        ],
        "image too small to be a radiograph",
    ),
}


@pytest.mark.parametrize("path", sorted(PYDICOM_FILES.glob("*.dcm")), ids=lambda p: p.name)
def test_every_bundled_pydicom_file_decodes_or_fails_for_its_own_reason(path: Path) -> None:
    reason = NOT_DECODED.get(path.name)
    if reason is None:
        grey = decode(path)
        assert grey.ndim == 2 and grey.dtype == np.uint8 and min(grey.shape) >= 64
    else:
        with pytest.raises(ScanError, match=f"^{re.escape(reason)}") as raised:
            decode(path)
        assert "\n" not in str(raised.value)


@pytest.mark.slow
def test_a_truncated_file_is_refused_for_where_it_was_cut_or_is_whole(tmp_path: Path) -> None:
    """Cut after every few bytes: never a crash and never a partial image; the reason follows the cut."""
    whole = (PYDICOM_FILES / "MR_small_RLE.dcm").read_bytes()
    image = decode(PYDICOM_FILES / "MR_small_RLE.dcm")
    cut_file = tmp_path / "cut.dcm"
    for cut in [*range(0, len(whole), 9), len(whole) - 1]:
        cut_file.write_bytes(whole[:cut])
        try:
            grey = decode(cut_file)
        except ScanError as error:
            reason = str(error)
        else:
            assert np.array_equal(grey, image), cut  # only run padding at the end was cut
            continue
        if cut == 0:
            assert reason == "empty file (0 bytes)"
        elif cut < 132:  # before the end of the DICM marker
            assert reason.startswith("not a DICOM file: no DICM marker at byte 128 and no data set at byte 0"), cut
        else:  # pydicom drops a cut element: the pixel data goes missing, or a header element is unreadable
            assert reason.startswith(("DICOM without pixel data (", "unreadable DICOM file: ")), (cut, reason)


# ---- filtering by Modality and view


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"Modality": "CT"}, "skipped: Modality CT, not a radiograph"),
        ({"Modality": ""}, "skipped: Modality missing, not a radiograph"),
        ({"ViewPosition": "LL"}, "skipped: lateral view (ViewPosition LL)"),
        (
            {"ViewPosition": "", "ViewCodeSequence": [Dataset()]},
            "skipped: lateral view (ViewCodeSequence left lateral)",
        ),
    ],
)
def test_non_radiographs_and_laterals_are_skipped_unless_the_filter_is_off(
    attributes: dict,
    reason: str,
    tmp_path: Path,
    source: np.ndarray,
) -> None:
    for item in attributes.get("ViewCodeSequence", []):
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "R-10236", "SRT", "left lateral"
    path = write_dicom(tmp_path / "film.dcm", source, **attributes)
    assert load_scan(path, 160).error == reason
    unfiltered = load_scan(path, 160, DicomOptions(frontal_only=False))
    assert unfiltered.error == "" and unfiltered.model_input is not None


# ---- the walk and the command line


def test_walk_finds_dicom_by_extension_and_by_marker(tmp_path: Path, source: np.ndarray) -> None:
    write_dicom(tmp_path / "upper.DCM", source)
    write_dicom(tmp_path / "1.2.840.113619.2.55.3.100", source)  # named by UID: suffix ".100"
    write_dicom(tmp_path / "IM0001", source)
    shutil.copy(
        PYDICOM_FILES / "dicomdirtests" / "DICOMDIR", tmp_path
    )  # an export's index: listed, then skipped by policy
    (tmp_path / "README").write_bytes(b"x" * 128 + b"DICX")
    names = [path.name for path in find_scans(tmp_path).scans]
    assert names == ["1.2.840.113619.2.55.3.100", "DICOMDIR", "IM0001", "upper.DCM"]
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


def run_score(
    folder: Path, scorer, dicom: DicomOptions = DicomOptions()
) -> tuple[ScoreSummary, list[dict[str, str]], list[str]]:
    out = folder.parent / "results.csv"
    summary = score_folder(folder, out, ScoreOptions(dicom=dicom), scorer=scorer)
    with open(out, newline="") as stream:
        header = next(csv.reader(stream))
    with open(out, newline="") as stream:
        rows = list(csv.DictReader(stream))
    return summary, rows, header


def test_ct_and_lateral_are_skipped_with_reasons_and_counted_apart(export: Path, scorer) -> None:
    summary, rows, header = run_score(export, scorer)
    errors = {Path(row["path"]).name: row["error"] for row in rows}
    assert tuple(header) == results_columns()
    assert errors == {
        "IM0002": "",
        "ct.dcm": "skipped: Modality CT, not a radiograph",
        "frontal.dcm": "",
        "lateral.dcm": "skipped: lateral view (ViewPosition LL)",
    }
    assert (summary.scored, summary.skipped, summary.failed, summary.exit_code) == (
        2,
        2,
        0,
        0,
    )  # a policy skip is no failure


def test_frontal_only_off_scores_them(export: Path, scorer) -> None:
    summary, rows, _ = run_score(export, scorer, DicomOptions(frontal_only=False))
    assert summary.exit_code == 0 and len(rows) == 4
    assert all(row["error"] == "" and 0.0 <= float(row["probability"]) <= 1.0 for row in rows)


def test_dicom_tags_are_opt_in_extra_columns(export: Path, scorer) -> None:
    _, rows, header = run_score(export, scorer, DicomOptions(tags=("AccessionNumber", "SOPInstanceUID")))
    assert tuple(header) == results_columns(("AccessionNumber", "SOPInstanceUID"))
    accession = {Path(row["path"]).name: row["AccessionNumber"] for row in rows}
    assert accession == {
        "IM0002": "ACC-0043",
        "ct.dcm": "ACC-0042",
        "frontal.dcm": "ACC-0042",
        "lateral.dcm": "ACC-0042",
    }
    assert all(row["SOPInstanceUID"].startswith("1.2.") for row in rows)


def test_no_patient_identifiers_are_written_by_default(export: Path, scorer) -> None:
    run_score(export, scorer)
    text = (export.parent / "results.csv").read_text()
    assert "Doe^Jane" not in text and "PID-4711" not in text and "ACC-00" not in text


def test_cli_says_how_many_the_policy_skipped(export: Path) -> None:
    result = CliRunner().invoke(app, ["score", str(export), "-o", str(export.parent / "cli.csv")])
    assert result.exit_code == 0, result.output
    assert re.search(r"^scored 2, failed 0 in .*; 2 skipped by the DICOM policy$", result.stderr, flags=re.M)


def test_cli_options_reach_the_dicom_options(export: Path) -> None:
    out = export.parent / "cli.csv"
    result = CliRunner().invoke(
        app, ["score", str(export), "-o", str(out), "--no-dicom-filter", "--dicom-tags", "AccessionNumber"]
    )
    assert result.exit_code == 0, result.output
    with open(out, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["error"] for row in rows] == ["", "", "", ""] and rows[0]["AccessionNumber"] == "ACC-0043"


def test_cli_rejects_unknown_dicom_tags(export: Path) -> None:
    result = CliRunner().invoke(app, ["score", str(export), "-o", "-", "--dicom-tags", "AccessionNumbr"])
    assert result.exit_code == 2 and "--dicom-tags: 'AccessionNumbr' is not a DICOM keyword" in result.output


def test_parse_tag_names_refuses_sequences_and_repeats() -> None:
    assert parse_tag_names(" AccessionNumber , StudyDate,") == ("AccessionNumber", "StudyDate")
    for text, message in (
        ("ViewCodeSequence", "sequence or binary"),
        ("PixelData", "sequence or binary"),
        ("StudyDate,StudyDate", "named twice"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_tag_names(text)


ODD = [
    "MR_truncated.dcm",
    "no_meta.dcm",
    "meta_missing_tsyntax.dcm",
    "badVR.dcm",
    "JPEG2000-embedded-sequence-delimiter.dcm",
]


def test_odd_pydicom_files_are_error_rows_and_the_run_continues(export: Path, scorer) -> None:
    for name in ODD:
        shutil.copy(PYDICOM_FILES / name, export / f"odd-{name}")
    summary, rows, _ = run_score(export, scorer, DicomOptions(frontal_only=False))
    errors = {Path(row["path"]).name: row["error"] for row in rows}
    assert (summary.failed, summary.scored, len(rows)) == (len(ODD), 4, 4 + len(ODD))
    assert all(errors[f"odd-{name}"].startswith(NOT_DECODED[name]) for name in ODD), errors


def test_an_extension_less_dicom_is_opened_once_and_parsed_once_when_scored(
    tmp_path: Path,
    source: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The walk reads its first 132 bytes to find it; scoring then opens it once and parses it once.

    pydicom then reads the first frame from the same open file.
    """
    path = write_dicom(tmp_path / "IM0001", source)
    opened, parsed = [], []
    real_open, real_dcmread = os.open, pydicom.dcmread

    def counting_open(file, *args, **kwargs):
        opened.append(Path(file))
        return real_open(file, *args, **kwargs)

    def counting_dcmread(*args, **kwargs):
        parsed.append(args)
        return real_dcmread(*args, **kwargs)

    monkeypatch.setattr(os, "open", counting_open)
    monkeypatch.setattr(pydicom, "dcmread", counting_dcmread)
    loaded = load_scan(path, 160, DicomOptions(tags=("AccessionNumber",)))
    assert loaded.error == "" and loaded.model_input is not None and loaded.tags == {"AccessionNumber": "ACC-0042"}
    assert opened == [path] and len(parsed) == 1


# ---- data sets without the Part 10 header, image-less DICOMs, the JPEG scan-header slip


@pytest.mark.parametrize(
    ("name", "implicit_vr", "little_endian", "keep_meta"),
    [
        ("IM0002", True, True, False),  # ACR-NEMA style: implicit VR little endian, named without an extension
        ("explicit-le.dcm", False, True, False),
        ("explicit-be.dcm", False, False, False),
        ("meta-no-preamble.dcm", False, True, True),
    ],
)
def test_a_data_set_without_preamble_scores_exactly_like_its_part_10_file(
    name: str,
    implicit_vr: bool,
    little_endian: bool,
    keep_meta: bool,
    tmp_path: Path,
    source: np.ndarray,
    scorer,
) -> None:
    part10 = write_dicom(
        tmp_path / "part10.dcm", source.astype(np.uint16) * 16, bits_stored=12, WindowCenter=2048, WindowWidth=4096
    )
    bare = without_part10_header(part10, tmp_path / name, implicit_vr, little_endian, keep_meta)
    assert find_scans(tmp_path).scans == sorted([part10, bare], key=lambda path: path.name)
    loaded = [
        load_scan(path, scorer.card.image_size, DicomOptions(tags=("AccessionNumber",))) for path in (part10, bare)
    ]
    assert [item.error for item in loaded] == ["", ""]
    assert loaded[1].tags == loaded[0].tags == {"AccessionNumber": "ACC-0042"}
    assert np.array_equal(loaded[1].model_input, loaded[0].model_input)
    probabilities = scorer.probabilities(np.stack([item.model_input for item in loaded]))
    assert probabilities[1] == probabilities[0]


@pytest.mark.parametrize(
    ("head", "is_data_set"),
    [
        (b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100", True),  # explicit VR little endian, group 0008
        (b"\x00\x08\x00\x05CS\x00\x0aISO_IR 100", True),  # explicit VR big endian
        (b"\x08\x00\x05\x00\x0a\x00\x00\x00ISO_IR 100", True),  # implicit VR little endian
        (b"\x02\x00\x00\x00UL\x04\x00\xc8\x00\x00\x00", True),  # file meta without the preamble
        (b"\x20\x08\x00\x05\x00CS\x0a\x00ISO_IR 100", False),  # no_meta.dcm: one stray byte first
        (b"\x08\x00\x05\x00\xff\xff\xff\xffXXXX", False),  # group 0008, then neither a VR nor a short length
        (b"\x10\x00\x10\x00PN\x08\x00Doe^Jane", False),  # a data set that starts with the patient: not checked for
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", False),
        (b"\x00" * 132, False),
        (b"\x08\x00", False),
    ],
)
def test_a_bare_data_set_is_told_by_its_first_element(head: bytes, is_data_set: bool) -> None:
    assert starts_with_data_element(head) is is_data_set


def test_a_jpeg_named_dcm_stays_an_error_row(tmp_path: Path, source: np.ndarray) -> None:
    cv2.imwrite(str(tmp_path / "photo.jpeg"), source)
    shutil.copy(tmp_path / "photo.jpeg", tmp_path / "photo.dcm")
    shutil.copy(tmp_path / "photo.jpeg", tmp_path / "IM0003")
    assert load_scan(tmp_path / "photo.dcm", 160).error == (
        "not a DICOM file: no DICM marker at byte 128 and no data set at byte 0 (the file holds a JPEG image)"
    )
    assert [path.name for path in find_scans(tmp_path).scans] == ["photo.dcm", "photo.jpeg"]  # IM0003 is not DICOM


IMAGE_LESS = {
    "dicomdirtests/DICOMDIR": "skipped: no image (Media Storage Directory)",
    "rtplan.dcm": "skipped: no image (RT Plan)",
    "ExplVR_LitEndNoMeta.dcm": "skipped: no image (RT Ion Plan)",  # and without the Part 10 header
    "rtstruct.dcm": "skipped: no image (RT Structure Set)",  # implicit VR, without the Part 10 header
    "test-SR.dcm": "skipped: no image (Comprehensive SR)",
    "waveform_ecg.dcm": "skipped: no image (12-lead ECG Waveform)",
    "empty_charset_LEI.dcm": "skipped: no image (no SOP class)",
}


@pytest.mark.parametrize("frontal_only", [True, False])
def test_dicomdir_and_image_less_dicoms_are_skipped_by_policy_whatever_the_filter(
    frontal_only: bool,
    export: Path,
    scorer,
) -> None:
    for name in IMAGE_LESS:
        shutil.copy(PYDICOM_FILES / name, export / Path(name).name)
    summary, rows, _ = run_score(export, scorer, DicomOptions(frontal_only=frontal_only))
    errors = {Path(row["path"]).name: row["error"] for row in rows}
    assert {name: errors[Path(name).name] for name in IMAGE_LESS} == IMAGE_LESS
    assert (summary.failed, summary.skipped) == (0, len(IMAGE_LESS) + (2 if frontal_only else 0))


def test_float_pixel_data_is_an_image_but_an_error_row(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "map.dcm", np.zeros((64, 64), np.uint8), Modality="MR")
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.FloatPixelData = np.zeros((64, 64), "<f4").tobytes()
    ds.save_as(path, enforce_file_format=True)
    assert load_scan(path, 160, DicomOptions(frontal_only=False)).error == (
        "DICOM float pixel data cannot be scored (a parametric map, not a radiograph)"
    )


def test_12_bit_lossy_jpeg_with_zeros_in_its_scan_header_decodes_as_its_fixed_twin() -> None:
    """JPEG-lossy.dcm says spectral selection 0..0 where a sequential JPEG needs 0..63; JPGExtended.dcm is it fixed."""
    fixed = pydicom.dcmread(PYDICOM_FILES / "JPGExtended.dcm")
    assert (fixed.file_meta.TransferSyntaxUID, fixed.BitsStored) == (JPEGExtended12Bit, 12)
    with pytest.warns(UserWarning, match="JPEG scan header not valid for a sequential JPEG"):
        repaired = decode(PYDICOM_FILES / "JPEG-lossy.dcm")
    assert np.array_equal(repaired, decode(PYDICOM_FILES / "JPGExtended.dcm"))


def test_only_sequential_jpeg_scan_headers_are_repaired(source: np.ndarray) -> None:
    baseline = cv2.imencode(".jpg", source)[1].tobytes()
    progressive = cv2.imencode(".jpg", source, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert repaired_scan_headers(baseline) is None and repaired_scan_headers(progressive) is None
    scan_header = baseline.index(b"\xff\xda")
    spectral_end = scan_header + 5 + 2 * baseline[scan_header + 4] + 1
    slipped = baseline[:spectral_end] + b"\x00" + baseline[spectral_end + 1 :]
    assert repaired_scan_headers(slipped) == baseline


def test_compressed_pixel_data_decodes_through_pylibjpeg_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow (installed with matplotlib) can decode JPEG 2000 too, but results must not hang on optional packages."""
    decoder = get_decoder(JPEG2000)
    assert "pillow" in decoder.available_plugins
    monkeypatch.delitem(decoder._available, "pylibjpeg")
    with pytest.raises(ScanError, match=r"transfer syntax JPEG 2000 Image Compression .* cannot be decoded"):
        decode(PYDICOM_FILES / "JPEG2000.dcm")
