"""Write what `xscan score` makes of pydicom's own test files into docs/dicom.md.

tests/input/test_dicom_corpus.py checks that the page is current.

The tables come from a real run: `xscan score` on pydicom's bundled test files with --no-dicom-filter,
then each file's transfer syntax and photometric interpretation read from its header.

Run after upgrading pydicom or changing how DICOM is read: python docs/dicom_corpus.py
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import tempfile
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pydicom.data

from xscan.input.dicom.image import SYNTAX_OF_ENCODING
from xscan.input.formats import DICOM_MARKER_END, has_dicom_marker
from xscan.scoring.results import SKIPPED_PREFIX

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(pydicom.data.__file__).parent / "test_files"
MARKED = re.compile(r"<!-- dicom-corpus -->\n(.*?)\n<!-- /dicom-corpus -->", re.S)
TOO_SMALL = "image too small to be a radiograph"
NOT_DICOM = "not a DICOM file"
STATUSES = ("scored", "too small", "no image", "refused")
SHOWN_NAMES = 4  # per refusal reason; the rest are counted


@dataclass(frozen=True)
class Outcome:
    """What became of one corpus file, and what its header says it is."""

    name: str  # below the corpus folder
    # Transfer syntax name and UID, ", no Part 10 header" added for a bare data set; "not DICOM" where xscan saw none.
    syntax: str
    photometric: str
    error: str

    @property
    def status(self) -> str:
        if not self.error:
            return "scored"
        if self.error.startswith(SKIPPED_PREFIX):
            return "no image"
        return "too small" if self.error.startswith(TOO_SMALL) else "refused"


def outcomes(rows: list[dict[str, str]], corpus: Path) -> list[Outcome]:
    """One outcome for each results row of a file below CORPUS (the folder as the run named it), by name."""
    found = []
    for row in rows:
        path = Path(row["path"])
        if path.is_relative_to(corpus):
            syntax, photometric = _header(path) if not row["error"].startswith(NOT_DICOM) else ("not DICOM", "-")
            found.append(Outcome(path.relative_to(corpus).as_posix(), syntax, photometric, row["error"]))
    return sorted(found, key=lambda outcome: outcome.name)


def _header(path: Path) -> tuple[str, str]:
    with open(path, "rb") as stream:
        bare = not has_dicom_marker(stream.read(DICOM_MARKER_END))
    with warnings.catch_warnings():  # this script reads one file at a time
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    syntax = ds.file_meta.get("TransferSyntaxUID") or SYNTAX_OF_ENCODING.get(ds.original_encoding)
    name = f"{syntax.name} ({syntax})" if syntax else "no transfer syntax"
    return name + (", no Part 10 header" if bare else ""), str(ds.get("PhotometricInterpretation", "-"))


def markdown(found: list[Outcome]) -> str:
    counts = Counter(outcome.status for outcome in found)
    lines = [
        f"{len(found)} DICOM files found in pydicom {pydicom.__version__}'s test files, "
        "scored with `--no-dicom-filter`: "
        f"{counts['scored']} scored, {counts['too small']} decoded but too small to be a radiograph (under 64 pixels a "
        f"side), {counts['no image']} skipped as holding no image, {counts['refused']} refused.",
        "",
        "| transfer syntax | scored | too small | no image | refused |",
        "| --- | --- | --- | --- | --- |",
    ]
    by_syntax: dict[str, Counter[str]] = defaultdict(Counter)
    for outcome in found:
        by_syntax[outcome.syntax][outcome.status] += 1
    lines += [
        f"| {syntax} | " + " | ".join(str(by_syntax[syntax][status]) for status in STATUSES) + " |"
        for syntax in sorted(by_syntax)
    ]
    decoded = Counter(outcome.photometric for outcome in found if outcome.status in ("scored", "too small"))
    lines += ["", "| photometric interpretation | files decoded |", "| --- | --- |"]
    lines += [f"| {photometric} | {decoded[photometric]} |" for photometric in sorted(decoded)]
    refused: dict[str, list[str]] = defaultdict(list)
    for outcome in found:
        if outcome.status == "refused":
            refused[outcome.error].append(outcome.name)
    lines += ["", "| refused with the error | files |", "| --- | --- |"]
    for error, names in sorted(refused.items()):
        shown = ", ".join(f"`{name}`" for name in names[:SHOWN_NAMES])
        more = f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
        lines.append(f"| {error.replace('|', '/')} | {shown}{more} |")
    return "\n".join(lines)


def score_corpus(output: Path) -> list[dict[str, str]]:
    """Run `xscan score` on the corpus, as a user would, and read back its rows."""
    command = [
        sys.executable,
        "-m",
        "xscan.cli",
        "score",
        str(CORPUS),
        "-o",
        str(output),
        "--no-dicom-filter",
        "--quiet",
    ]
    subprocess.run(command, check=False, timeout=600)
    with open(output, newline="") as stream:
        return list(csv.DictReader(stream))


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        block = markdown(outcomes(score_corpus(Path(folder) / "corpus.csv"), CORPUS))
    path = ROOT / "docs" / "dicom.md"
    path.write_text(MARKED.sub(lambda _: f"<!-- dicom-corpus -->\n{block}\n<!-- /dicom-corpus -->", path.read_text()))


if __name__ == "__main__":
    main()
