"""Hostile files, each built from a real scan: every one is a ScanError with a specific reason, never a crash."""

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.data import real_scans

from xscan.errors import ScanError
from xscan.input.decode import decode, header_size, sniff_format
from xscan.input.limits import MAX_PIXELS, MIN_SIDE
from xscan.scoring.pipeline import load_scan


@pytest.fixture(scope="module")
def grey():
    return decode(real_scans("PNEUMONIA", 1)[0])


def _encoded(grey, extension):
    ok, data = cv2.imencode(extension, grey)
    assert ok
    return data.tobytes()


def test_zero_byte_file(tmp_path):
    path = tmp_path / "zero.jpg"
    path.write_bytes(b"")
    with pytest.raises(ScanError, match=r"^empty file \(0 bytes\)$"):
        decode(path)


def test_truncated_jpeg_is_refused_by_its_missing_end_marker(tmp_path):
    original = real_scans("NORMAL", 1)[0].read_bytes()
    path = tmp_path / "cut.jpeg"
    path.write_bytes(original[: len(original) * 2 // 3])
    with pytest.raises(ScanError, match="^truncated JPEG: no end-of-image marker$"):
        decode(path)


def test_jpeg_padded_after_its_end_marker_still_decodes(tmp_path):
    original = real_scans("NORMAL", 1)[0]
    path = tmp_path / "padded.jpeg"
    path.write_bytes(original.read_bytes() + b"\x00" * 100)
    assert np.array_equal(decode(path), decode(original))


def test_truncated_png(tmp_path, grey):
    data = _encoded(grey, ".png")
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ScanError, match="^truncated PNG: no IEND chunk$"):
        decode(path)


def test_truncated_bmp(tmp_path, grey):
    data = _encoded(grey, ".bmp")
    path = tmp_path / "cut.bmp"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ScanError, match=rf"^truncated BMP: {len(data) // 2} of {len(data)} bytes$"):
        decode(path)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        (
            "page.jpg",
            b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n",
            "not a JPEG image: the file holds HTML",
        ),
        ("notes.png", "Befund: unauffällig\n".encode(), "not a PNG image: the file holds text"),
        ("blob.tif", bytes(range(256)) * 4, "not a TIFF image: the file holds unrecognised binary data"),
    ],
)
def test_content_that_is_not_an_image(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ScanError) as raised:
        decode(path)
    assert str(raised.value) == reason


def test_png_named_jpg_is_decoded_by_its_content(tmp_path, grey):
    path = tmp_path / "misnamed.jpg"
    path.write_bytes(_encoded(grey, ".png"))
    assert sniff_format(path.read_bytes(), path) == "PNG"
    assert np.array_equal(decode(path), grey)


def _png_claiming(grey, width, height):
    data = bytearray(_encoded(grey, ".png"))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))  # a valid IHDR, so only its size is hostile
    return bytes(data)


def _tiff_claiming(grey, width, height):
    data = bytearray(_encoded(grey, ".tif"))
    assert data[:2] == b"II"
    directory = struct.unpack_from("<I", data, 4)[0]
    for index in range(struct.unpack_from("<H", data, directory)[0]):
        entry = directory + 2 + 12 * index
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):
            struct.pack_into("<I" if kind == 4 else "<H", data, entry + 8, width if tag == 256 else height)
    return bytes(data)


@pytest.mark.parametrize(("extension", "build"), [(".png", _png_claiming), (".tif", _tiff_claiming)])
def test_header_claiming_billions_of_pixels_is_refused_before_decoding(tmp_path, grey, extension, build):
    path = tmp_path / f"bomb{extension}"
    width, height = (60000, 60000) if extension == ".png" else (60000, 50000)
    path.write_bytes(build(grey, width, height))
    assert width * height > MAX_PIXELS
    with pytest.raises(
        ScanError, match=rf"^image too large: header claims {width}x{height} pixels \(limit 100 megapixels\)$"
    ):
        decode(path)


@pytest.mark.parametrize("extension", [".png", ".tif", ".bmp", ".jpg"])
def test_header_size_reads_real_headers(grey, extension):
    data = _encoded(grey, extension)
    assert header_size(data, sniff_format(data, Path(f"x{extension}"))) == (grey.shape[1], grey.shape[0])


def test_image_too_small_to_be_a_radiograph(tmp_path, grey):
    path = tmp_path / "thumb.png"
    cv2.imwrite(str(path), cv2.resize(grey, (MIN_SIDE - 8, MIN_SIDE - 8), interpolation=cv2.INTER_AREA))
    with pytest.raises(ScanError, match=rf"too small to be a radiograph \({MIN_SIDE - 8}x{MIN_SIDE - 8} pixels\)"):
        decode(path)


def test_file_that_vanished_after_the_walk(tmp_path):
    path = tmp_path / "gone.jpeg"
    path.write_bytes(real_scans("NORMAL", 1)[0].read_bytes())
    path.unlink()
    assert load_scan(path, 160).error == "cannot read file: No such file or directory"


def test_file_replaced_by_a_folder_after_the_walk(tmp_path):
    path = tmp_path / "swapped.jpeg"
    path.mkdir()
    with pytest.raises(ScanError, match="^not a regular file$"):
        decode(path)


def test_fifo_swapped_in_after_the_walk_is_refused_without_blocking_or_reading(tmp_path, monkeypatch):
    """Opened non-blocking (a pipe with no writer would block a plain open), refused by type before any read."""
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    holder = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # keeps data in the pipe; no open of it can block now
    flags_asked = []
    real_open = os.open

    def spy(file, flags, *args, **kwargs):
        flags_asked.append(flags)
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    try:
        os.write(holder, b"\x89PNG")
        assert load_scan(path, 160).error == "not a regular file"
        assert flags_asked and all(flags & os.O_NONBLOCK for flags in flags_asked)
        assert os.read(holder, 100) == b"\x89PNG"  # nothing was read from it
    finally:
        os.close(holder)
