"""Decoding scan files of every supported format into grey arrays, and refusing what is not a scan."""

import cv2
import numpy as np
import pytest
from support.data import FULLRES, needs_data, real_scans

from xscan.errors import ScanError
from xscan.input.decode import decode
from xscan.input.limits import MIN_SIDE


def test_real_jpeg_decodes_to_uint8_grey():
    grey = decode(real_scans("PNEUMONIA", 1)[0])
    assert grey.dtype == np.uint8 and grey.ndim == 2 and grey.shape == (224, 224)


@pytest.mark.parametrize("extension", [".png", ".tif", ".bmp"])
def test_lossless_formats_round_trip_exactly(tmp_path, extension):
    grey = decode(real_scans("NORMAL", 1)[0])
    path = tmp_path / f"scan{extension}"
    cv2.imwrite(str(path), grey)
    assert np.array_equal(decode(path), grey)


def test_16_bit_png_is_stretched_to_8_bit(tmp_path):
    grey = decode(real_scans("NORMAL", 1)[0])
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), grey.astype(np.uint16) * 16)  # 12-bit range in a 16-bit file
    decoded = decode(path)
    assert decoded.dtype == np.uint8
    low, high = int(grey.min()), int(grey.max())
    stretched = (grey.astype(float) - low) * 255 / (high - low)  # the image's own range fills 0..255
    assert np.abs(decoded - stretched).max() <= 1


def test_colour_image_becomes_grey(tmp_path):
    grey = decode(real_scans("NORMAL", 1)[0])
    path = tmp_path / "colour.png"
    cv2.imwrite(str(path), cv2.merge([grey, grey, grey]))
    assert np.array_equal(decode(path), grey)


@needs_data
def test_reduced_decoding_keeps_both_sides_above_the_minimum():
    original = sorted((FULLRES / "NORMAL").iterdir())[0]
    full = decode(original)
    reduced = decode(original, min_side=320)
    assert min(reduced.shape) >= 320
    assert reduced.size < full.size


def test_too_small_and_unknown_files_are_scan_errors(tmp_path):
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((MIN_SIDE - 1, 200), np.uint8))
    with pytest.raises(ScanError, match="too small"):
        decode(tiny)
    other = tmp_path / "scan.gif"
    other.write_bytes(b"GIF89a")
    with pytest.raises(ScanError, match="unsupported"):
        decode(other)
