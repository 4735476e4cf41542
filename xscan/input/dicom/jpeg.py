"""The JPEG inside a DICOM, read as leniently as IJG libjpeg reads it: a scan header slip repaired before decoding.

A sequential JPEG (baseline or extended, Huffman coded) has one meaning for the spectral selection
and approximation bytes of its scan headers: 0..63 and 0. Some encoders wrote zeros there; IJG
libjpeg ("Invalid SOS parameters for sequential JPEG", a warning) reads such files as if the bytes
were right, pylibjpeg's libjpeg refuses them. Repairing the bytes gives what IJG decodes.
"""

from __future__ import annotations

import re

SEQUENTIAL_FRAMES = frozenset({0xC0, 0xC1})  # SOF0 baseline, SOF1 extended sequential; both Huffman coded
START_OF_SCAN = 0xDA
END_OF_IMAGE = 0xD9
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and the restart markers carry no length
SEQUENTIAL_SCAN = b"\x00\x3f\x00"  # spectral selection start 0, end 63; successive approximation 0
# After a scan's entropy-coded data, the next marker: 0xFF 0x00 is a stuffed byte, 0xFFD0-D7 restart markers.
NEXT_MARKER = re.compile(rb"\xff+([^\x00\xff\xd0-\xd7])")


def repaired_scan_headers(frame: bytes) -> bytes | None:
    """Repair the scan headers of a sequential JPEG to say 0..63 and 0.

    Only the headers are parsed: once the scans have covered every component of the frame (one
    scan for an interleaved image, as a grey radiograph is), the entropy-coded data is not read.

    Args:
        frame: One frame's JPEG bytes.

    Returns:
        The frame with every scan header repaired; None when none needed it, or when the frame is
        not a sequential JPEG.
    """
    if not frame.startswith(b"\xff\xd8"):
        return None
    repaired = bytearray(frame)
    components_left = 0  # of the frame, not yet in a scan; set by the start of a sequential frame
    position = 2
    while position + 4 <= len(frame) and frame[position] == 0xFF:
        marker = frame[position + 1]
        if marker == 0xFF:  # a fill byte before a marker
            position += 1
            continue
        if marker == END_OF_IMAGE:
            break
        if marker in STANDALONE:
            position += 2
            continue
        length = int.from_bytes(frame[position + 2 : position + 4], "big")
        if marker in SEQUENTIAL_FRAMES and position + 9 < len(frame):
            components_left = frame[position + 9]
        elif marker == START_OF_SCAN:
            if not components_left:  # a progressive, lossless or hierarchical JPEG: its scan headers mean other things
                return None
            in_scan = frame[position + 4]
            spectral = position + 5 + 2 * in_scan  # after the component count and two bytes per component
            repaired[spectral : spectral + 3] = SEQUENTIAL_SCAN
            components_left -= in_scan
            found = NEXT_MARKER.search(frame, position + 2 + length) if components_left > 0 else None
            if found is None:
                break
            position = found.start(1) - 1
            continue
        position += 2 + length
    return bytes(repaired) if repaired != frame else None
