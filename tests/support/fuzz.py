"""A mutation-fuzzed corpus made from real films and DICOMs, the same for every seed: what a hostile night looks like.

Seeds are real files: JPEGs from the training split (and, for the benchmark, full-resolution ones),
PNGs from the adult set, DICOMs written with pydicom from a real film (uncompressed 8 and 16 bit,
implicit and explicit VR, JPEG baseline) and pydicom's own test files in compressed transfer
syntaxes. Each corpus file is one seed changed by one mutation kind (`MUTATIONS`):

- bit_flip: 1 to 32 bits flipped, half of them in the first kilobyte (the headers);
- truncate: the file cut anywhere;
- zero_block: a block of 1 byte to 4 KiB set to zero;
- splice: a stretch replaced by bytes of another seed;
- header: one header field made wrong: a DICOM element's value, VR or length changed, its tag renamed
  (so that it is missing) or a string value made multi-valued; a JPEG marker segment or PNG IHDR byte changed.

`write_corpus(folder, count, seed)` writes COUNT files and returns what each is; the same arguments
give the same bytes. Used by tests/input/test_fuzz.py and benchmarks/fuzz.py.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pydicom.data
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import DigitalXRayImageStorageForPresentation, ImplicitVRLittleEndian, JPEGBaseline8Bit

MUTATIONS = ("bit_flip", "truncate", "zero_block", "splice", "header")
# pydicom's own files in encodings xscan decodes with plugins: JPEG 2000, JPEG-LS, RLE, extended JPEG, deflate, palette.
PYDICOM_SEEDS = (
    "JPEG2000.dcm",
    "MR_small_RLE.dcm",
    "JPEGLSNearLossless_08.dcm",
    "JPGExtended.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "MR_small_jp2klossless.dcm",
    "image_dfl.dcm",
    "SC_rgb_rle_16bit.dcm",
    "MR_small_implicit.dcm",
    "ExplVR_BigEnd.dcm",
)
# DICOM elements a header mutation aims at: what xscan and pydicom read to decode the pixels.
DICOM_TARGETS = (
    (0x0002, 0x0010),
    (0x0008, 0x0016),
    (0x0008, 0x0060),
    (0x0018, 0x5101),
    (0x0028, 0x0002),
    (0x0028, 0x0004),
    (0x0028, 0x0008),
    (0x0028, 0x0010),
    (0x0028, 0x0011),
    (0x0028, 0x0100),
    (0x0028, 0x0101),
    (0x0028, 0x0102),
    (0x0028, 0x0103),
    (0x0028, 0x1050),
    (0x0028, 0x1051),
    (0x0028, 0x1052),
    (0x0028, 0x1053),
    (0x7FE0, 0x0010),
)
TEXT_VRS = (b"CS", b"DS", b"IS", b"UI", b"LO", b"SH")


@dataclass(frozen=True)
class Seed:
    """A real file to mutate: its name, extension and bytes."""

    name: str
    suffix: str
    data: bytes


@dataclass(frozen=True)
class FuzzFile:
    """One file of a corpus: where it is, the mutation that made it and its seed."""

    path: Path
    mutation: str
    seed: str


def seeds(data: Path, fullres: bool = False) -> list[Seed]:
    """The real files a corpus is made from; DATA is the shared data folder, FULLRES adds two full-resolution films."""
    train = data / "chest_xray" / "train"
    jpegs = sorted((train / "NORMAL").iterdir())[:2] + sorted((train / "PNEUMONIA").iterdir())[:2]
    if fullres:
        jpegs += (
            sorted((data / "fullres" / "NORMAL").iterdir())[:1] + sorted((data / "fullres" / "PNEUMONIA").iterdir())[:1]
        )
    pngs = sorted((data / "nih_adult" / "NORMAL").glob("*.png"))[:2]
    found = [Seed(path.stem, path.suffix, path.read_bytes()) for path in jpegs + pngs]
    film = cv2.imread(str(jpegs[0]), cv2.IMREAD_GRAYSCALE)
    found += _film_dicoms(film)
    corpus = Path(pydicom.data.__file__).parent / "test_files"
    found += [
        Seed(Path(name).stem, ".dcm", (corpus / name).read_bytes())
        for name in PYDICOM_SEEDS
        if (corpus / name).is_file()
    ]
    return found


def _film_dicoms(film: np.ndarray) -> list[Seed]:
    """A real film as three DX DICOMs.

    8-bit explicit VR, 16-bit MONOCHROME1 implicit VR with rescale and window, JPEG baseline.
    """
    made = []
    stored = (film.astype(np.uint16) * 16 + 7).astype(np.uint16)
    for name, pixels, photometric, bits, extra in (
        ("dx8", film, "MONOCHROME2", 8, {}),
        (
            "dx16",
            4095 - stored,
            "MONOCHROME1",
            12,
            {"RescaleSlope": "1.5", "RescaleIntercept": "-100", "WindowCenter": "2000", "WindowWidth": "3000"},
        ),
        ("dxjpeg", film, "MONOCHROME2", 8, {"jpeg": True}),
    ):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
        ds.Modality, ds.ViewPosition = "DX", "PA"
        ds.set_pixel_data(pixels, photometric, bits)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = (
            f"1.2.826.0.1.3680043.8.498.{len(made) + 1}"  # not a random one
        )
        for key, value in extra.items():
            if key != "jpeg":
                setattr(ds, key, value)
        if extra.get("jpeg"):
            ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
            ds.PixelData = encapsulate([cv2.imencode(".jpg", film, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()])
            ds["PixelData"].VR = "OB"
        elif bits > 8:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        made.append(Seed(name, ".dcm", buffer.getvalue()))
    return made


def mutate(seed: Seed, others: list[Seed], mutation: str, rng: random.Random) -> bytes:
    """SEED's bytes changed by one MUTATION (one of MUTATIONS), drawn from RNG; OTHERS give spliced bytes."""
    data = bytearray(seed.data)
    if mutation == "bit_flip":
        for _ in range(rng.randint(1, 32)):
            at = rng.randrange(min(len(data), 1024)) if rng.random() < 0.5 else rng.randrange(len(data))
            data[at] ^= 1 << rng.randrange(8)
    elif mutation == "truncate":
        del data[rng.randrange(1, len(data)) :]
    elif mutation == "zero_block":
        start, length = rng.randrange(len(data)), rng.randint(1, 4096)
        data[start : start + length] = bytes(len(data[start : start + length]))
    elif mutation == "splice":
        donor = rng.choice(others).data
        start, length = rng.randrange(len(data)), rng.randint(1, 8192)
        taken = rng.randrange(len(donor))
        data[start : start + length] = donor[taken : taken + length]
    elif mutation == "header":
        data = _header_mutation(bytes(data), seed.suffix, rng)
    else:
        raise ValueError(f"unknown mutation {mutation!r}")
    return bytes(data)


def _header_mutation(data: bytes, suffix: str, rng: random.Random) -> bytearray:
    if suffix == ".dcm":
        return _dicom_header(data, rng)
    if data.startswith(b"\x89PNG"):
        return _png_header(data, rng)
    return _jpeg_header(data, rng)


def _dicom_header(data: bytes, rng: random.Random) -> bytearray:
    """One of DICOM_TARGETS found in DATA changed: value, VR, length, tag (so it is missing) or made multi-valued."""
    out = bytearray(data)
    present = [(at, tag) for tag in DICOM_TARGETS for at in [_find_tag(data, tag)] if at >= 0]
    if not present:
        out[rng.randrange(len(out))] ^= 0xFF
        return out
    at, _ = rng.choice(present)
    explicit = data[at + 4 : at + 6].isalpha()
    big = (
        data[at : at + 2] != data[at : at + 2][::-1] and data[at] == 0 and data[at + 1] != 0
    )  # big endian tags start 00
    header = 8 if not explicit or data[at + 4 : at + 6] not in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN") else 12
    length_at, length_size = (at + 6, 2) if header == 8 and explicit else ((at + 8, 4) if explicit else (at + 4, 4))
    order = "big" if big else "little"
    value_at = at + header
    length = min(int.from_bytes(data[length_at : length_at + length_size], order), len(data) - value_at)
    action = rng.choice(("value", "value", "vr", "length", "rename", "multi"))
    if action == "value" and length:
        for offset in range(min(length, 8)):
            out[value_at + offset] = rng.choice((0, 0xFF, rng.randrange(256), ord("\\"), ord("9")))
    elif action == "vr" and explicit:
        out[at + 4 : at + 6] = rng.choice((b"XX", b"UN", b"SQ", b"US", b"OB", b"DS", b"\x00\x00"))
    elif action == "length":
        choice = rng.choice((0, 1, length + 1, length * 2 + 2, 0xFFFF, 0xFFFFFFFF))
        out[length_at : length_at + length_size] = (choice % (1 << (8 * length_size))).to_bytes(length_size, order)
    elif action == "multi" and length >= 2 and (not explicit or data[at + 4 : at + 6] in TEXT_VRS):
        out[value_at + rng.randrange(length)] = ord("\\")
    else:  # rename: the element becomes another one, so the real one is missing
        out[at + 2 : at + 4] = bytes((data[at + 2] ^ 0x01, data[at + 3] ^ 0x10))
    return out


def _find_tag(data: bytes, tag: tuple[int, int]) -> int:
    """Where TAG starts as an element in DATA (little or big endian), or -1."""
    for packed in (struct.pack("<HH", *tag), struct.pack(">HH", *tag)):
        at = data.find(packed, 132 if data[128:132] == b"DICM" else 0)
        if at >= 0:
            return at
    return -1


def _png_header(data: bytes, rng: random.Random) -> bytearray:
    """An IHDR field (width, height, bit depth, colour type, interlace) changed, its CRC fixed or not."""
    out = bytearray(data)
    field_at, size = rng.choice(((16, 4), (20, 4), (24, 1), (25, 1), (28, 1)))
    value = rng.choice((0, 1, (1 << (8 * size)) - 1, rng.randrange(1 << (8 * size)), 65535, 3, 16))
    out[field_at : field_at + size] = (value % (1 << (8 * size))).to_bytes(size, "big")
    if rng.random() < 0.8:
        out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    return out


def _jpeg_header(data: bytes, rng: random.Random) -> bytearray:
    """A byte of one marker segment before the image data changed, or SOF's size set to an extreme.

    The segments: SOF, DHT, DQT, SOS, APPn.
    """
    out = bytearray(data)
    segments = []
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
        segments.append((at, marker, length))
        if marker == 0xDA:
            break
        at += 2 + length
    if not segments:
        out[rng.randrange(len(out))] ^= 0xFF
        return out
    at, marker, length = rng.choice(segments)
    if marker in (0xC0, 0xC1, 0xC2) and rng.random() < 0.5:
        out[at + 5 : at + 9] = rng.choice(
            (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x00\x01\xff\xff", b"\x7f\xff\x7f\xff")
        )
    else:
        offset = rng.randrange(1, max(2, min(length + 2, 24)))
        out[at + offset] = rng.randrange(256)
    return out


def write_corpus(
    folder: Path, count: int, seed: int = 0, sources: list[Seed] | None = None, data: Path | None = None
) -> list[FuzzFile]:
    """Write COUNT mutated files into FOLDER, mutation kinds in turn, seeds drawn at random.

    The same arguments give the same files.
    """
    sources = (
        sources
        if sources is not None
        else seeds(data or Path(__file__).resolve().parents[2].parent / "shared" / "data")
    )
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for index in range(count):
        rng = random.Random(f"{seed}:{index}")
        mutation = MUTATIONS[index % len(MUTATIONS)]
        source = rng.choice(sources)
        path = folder / f"{index:05d}-{mutation}-{source.name}{source.suffix}"
        path.write_bytes(mutate(source, [other for other in sources if other is not source], mutation, rng))
        made.append(FuzzFile(path, mutation, source.name))
    return made
