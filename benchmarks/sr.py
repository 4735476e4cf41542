"""`xscan sr` benchmark: the heatmap images' cost per film on one core beside the reports alone, and peak memory.

1. Cost: DICOM copies of F full-resolution films (../shared/data/fullres, 600 to 2,900 px, one
   study each) are scored once, then `report_studies` runs in this process on one thread
   (OpenCV, BLAS and LiteRT on 1 thread; run the script under `taskset -c 0` for one core) into a
   fresh folder, without images (the reports alone) and with them, R times each, alternating.
   The table gives the median milliseconds per film of each and the images' own cost (the
   difference), against the 60 ms a film the issue allows.
2. Memory: N DICOM copies (small: the 224-pixel training films, enlarged to 1,024 px in the
   images) in studies of 4 are scored, then `xscan sr RESULTS -o DIR` runs as a process of its own,
   and its peak resident memory comes from wait4, against 300 MB. The images take about 3 MB each
   on disk: N = 2,000 writes some 6 GB into the temporary folder, removed at the end.

    taskset -c 0 python benchmarks/sr.py --films 40 --repeats 3 --copies 2000
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    ENV[variable] = "1"


def write_film(path: Path, source: Path, study: str, number: int) -> None:
    """SOURCE (a JPEG film) as an 8-bit DX image of STUDY, the tests' film (support.pacs) with its geometry."""
    import cv2
    from support.pacs import film_dataset

    ds = film_dataset(cv2.imread(str(source), cv2.IMREAD_GRAYSCALE), study[-8:], study, number, accession=study[-8:])
    ds.PatientOrientation, ds.ImagerPixelSpacing = ["L", "F"], [0.15, 0.15]
    ds.save_as(path, enforce_file_format=True)


def build_export(folder: Path, sources: list[Path], count: int, per_study: int) -> Path:
    """COUNT DICOM films cycled from SOURCES, PER_STUDY to a study, scored; the results CSV."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True)
    for index in range(count):
        study = generate_uid(entropy_srcs=["bench study", str(index // per_study)])
        write_film(folder / f"{index:05d}.dcm", sources[index % len(sources)], study, index % per_study + 1)
    results = folder.parent / f"{folder.name}.csv"
    done = subprocess.run(
        [sys.executable, "-m", "xscan.cli", "score", str(folder), "-o", str(results), "--quiet"], env=ENV
    )
    if done.returncode != 0:
        sys.exit(f"xscan score exited {done.returncode}")
    return results


def cost_per_film(results: Path, films: int, repeats: int, work: Path) -> tuple[list[float], list[float]]:
    """CPU seconds per film of `report_studies` without and with images, each run into a fresh folder.

    CPU time of this one-threaded process, not wall-clock time: on a machine shared with other
    jobs the wall clock measures the queue for the cores, the CPU time what one film costs.
    """
    import cv2

    from xscan.model.scorer import load_scorer
    from xscan.pacs.run import report_studies

    cv2.setNumThreads(1)
    load_scorer()  # the imports and the model file in the page cache before the first timed run
    alone, with_images = [], []
    for repeat in range(repeats):
        for images, times in ((False, alone), (True, with_images)):
            folder = work / f"sr-{repeat}-{images}"
            started = time.process_time()
            report_studies(results, folder, images=images, state_dir=work / "state")
            times.append((time.process_time() - started) / films)
            shutil.rmtree(folder)
    return alone, with_images


# The child reads its own peak (VmHWM) as it exits. wait4's ru_maxrss would not do: Linux counts in it
# the forked copy of this process, whose memory (the model, highdicom) is as large as the child's.
MEASURED = """
import atexit, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]))
from xscan.cli import app
app(sys.argv[1:], prog_name="xscan")
"""


def peak_rss_mb(results: Path, folder: Path) -> tuple[float, float]:
    """Peak resident memory (MB) and seconds of `xscan sr RESULTS -o FOLDER` as a process of its own."""
    started = time.perf_counter()
    peak = folder.parent / f"{folder.name}.peak"
    done = subprocess.run(
        [sys.executable, "-c", MEASURED, str(peak), "sr", str(results), "-o", str(folder)],
        env={**ENV, "XSCAN_STATE_DIR": str(folder.parent / "state")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"xscan sr failed: {done.stderr}")
    return int(peak.read_text()) / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=40, help="full-resolution films for the cost per film")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind, median reported (0: memory only)")
    parser.add_argument("--copies", type=int, default=2000, help="films for the peak memory (0: skip)")
    args = parser.parse_args()
    sys.path[:0] = [str(REPO), str(REPO / "tests")]  # xscan, and the tests' `support` for the films
    fullres = sorted(p for p in (DATA / "fullres").rglob("*.jpeg"))[: args.films]
    small = sorted((DATA / "chest_xray" / "train" / "PNEUMONIA").glob("*.jpeg"))[:50]
    with tempfile.TemporaryDirectory(prefix="xscan-bench-sr-") as temporary:
        work = Path(temporary)
        results = build_export(work / "films", fullres, len(fullres), per_study=1)
        if args.repeats:
            alone, with_images = cost_per_film(results, len(fullres), args.repeats, work)
            sr_ms, all_ms = statistics.median(alone) * 1000, statistics.median(with_images) * 1000
            print("CPU time of one thread, per film:")
            print("| films | reports alone, ms/film | reports + images, ms/film | images, ms/film | target |")
            print("|---:|---:|---:|---:|---|")
            print(f"| {len(fullres)} | {sr_ms:.1f} | {all_ms:.1f} | {all_ms - sr_ms:.1f} | <= 60 |")
            runs = [round(t * 1000, 1) for t in with_images]
            print(f"(medians of {args.repeats}; each run: {runs} ms/film with images)")
        print()
        print("`xscan sr` as a process (reports and images):")
        print("| films | size | studies | peak RSS MB | seconds | target |")
        print("|---:|---|---:|---:|---:|---|")
        rss, seconds = peak_rss_mb(results, work / "films-sr")
        print(f"| {len(fullres)} | full resolution | {len(fullres)} | {rss:.0f} | {seconds:.0f} | < 300 MB |")
        if args.copies:
            many = build_export(work / "many", small, args.copies, per_study=4)
            rss, seconds = peak_rss_mb(many, work / "many-sr")
            print(f"| {args.copies} | 224 px | {-(-args.copies // 4)} | {rss:.0f} | {seconds:.0f} | < 300 MB |")


if __name__ == "__main__":
    main()
