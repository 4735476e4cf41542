"""How long `xscan report --labels --html` takes on a 10,000-row results file, and how much of it is heatmaps.

Writes a results CSV of N rows (default 10,000) whose paths cycle through the real training scans
(so the galleries' files exist and ground truth comes from their folders) with made-up but
class-dependent probabilities, then runs `xscan report RESULTS --labels --html DIR` as a real
subprocess and prints the whole time and the part spent loading the model and drawing heatmaps.

    python benchmarks/review_page.py [--rows 10000] [--gallery 12]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xscan.model.scorer import load_scorer
from xscan.scoring.results import ResultsWriter, Row

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO.parent / "shared" / "data" / "chest_xray" / "train"


def write_results(destination: Path, rows: int, model_id: str) -> None:
    files = sorted(TRAIN.glob("*/*.jpeg"))
    rng = np.random.default_rng(0)
    logits = (
        rng.normal(2.5, 1.5) if files[i % len(files)].parent.name == "PNEUMONIA" else rng.normal(-1.5, 1.5)
        for i in range(rows)
    )
    with ResultsWriter(destination) as writer:
        writer.write(
            [
                Row(str(files[i % len(files)]), float(1 / (1 + np.exp(-logit))), 0.9, model_id)
                for i, logit in enumerate(logits)
            ]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--gallery", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        results = Path(scratch) / "results.csv"
        write_results(results, args.rows, load_scorer().card.model_id)
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "xscan.cli",
                "report",
                str(results),
                "--labels",
                "--html",
                str(Path(scratch) / "page"),
                "--gallery",
                str(args.gallery),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=True,
        )
        wall = time.monotonic() - started
    drawn = re.search(r"\((\d+) scans drawn in ([\d.]+) s; ([\d.]+) s in all\)", done.stderr)
    assert drawn, done.stderr
    scans, heatmaps = int(drawn[1]), float(drawn[2])
    print(
        f"{args.rows} rows, --gallery {args.gallery}: {wall:.1f} s from process start to exit; "
        f"{scans} scans drawn with heatmaps in {heatmaps:.1f} s (model loading included); "
        f"{wall - heatmaps:.1f} s for everything else "
        "(start-up, reading, metrics with 1000 bootstrap resamples, plots, page)"
    )


if __name__ == "__main__":
    main()
