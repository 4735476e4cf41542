"""Throughput benchmark: `xscan score` against a naive loop, load-everything, and the decode-only floor.

Builds a folder of N full-resolution scans (symbolic links to ../shared/data/fullres, cycled to
reach N) and runs each method on the same files in its own subprocess, so that each one's peak
resident memory is its own. Prints a Markdown table.

    python benchmarks/throughput.py --sizes 100,1000,5000 --repeats 3

With --baseline DIR (a checkout of other code, e.g. `git archive` of an older commit), `xscan score`
also runs with DIR first on PYTHONPATH, in the same sitting, as the method "baseline".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FULLRES = REPO.parent / "shared" / "data" / "fullres"
METHODS = ("naive", "load-everything", "xscan", "decode-only")
CLI_METHODS = ("xscan", "baseline")  # `xscan score` as a process: this code, and --baseline's


@dataclass
class Run:
    """One run of one method: wall-clock seconds of the whole process and of its steady work."""

    images: int  # images the work covered (the naive loop may cover only a subset)
    wall: float  # process start to exit
    work: float  # the scoring (or decoding) itself, start-up excluded
    peak_rss_mb: float
    first_row: float | None = None  # xscan only: process start to the first data row in the CSV


# ---- the folder of scans -------------------------------------------------------------------------


def build_folder(root: Path, count: int) -> Path:
    """COUNT symbolic links to the full-resolution scans, cycled, with unique sorted names."""
    sources = sorted(p for p in FULLRES.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    if not sources:
        sys.exit(f"no full-resolution scans found in {FULLRES}")
    folder = root / f"scans-{count}"
    folder.mkdir()
    for index in range(count):
        source = sources[index % len(sources)]
        (folder / f"{index:06d}-{source.name}").symlink_to(source)
    return folder


# ---- the methods, each run inside a child process ------------------------------------------------


def naive(paths: list[Path], weights: Path) -> float:
    """Read, resize and predict one image at a time with Keras defaults; returns work seconds."""
    import cv2

    from xscan.input.preprocess import preprocess
    from xscan.model.scorer import load_scorer

    scorer = load_scorer(weights, threads=0)  # 0: TensorFlow's own default thread count, as a plain script has
    size, network = scorer.card.image_size, scorer.network
    started = time.perf_counter()
    for path in paths:
        scan = preprocess(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), size)
        network.predict(scan[None], verbose=0)
    return time.perf_counter() - started


def load_everything(paths: list[Path], weights: Path) -> float:
    """Read and resize every image into one array, then one `predict` call; returns work seconds."""
    import cv2
    import numpy as np

    from xscan.input.preprocess import preprocess
    from xscan.model.scorer import load_scorer

    scorer = load_scorer(weights, threads=0)  # 0: TensorFlow's own default thread count, as a plain script has
    size, network = scorer.card.image_size, scorer.network
    started = time.perf_counter()
    scans = np.stack([preprocess(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), size) for path in paths])
    network.predict(scans, verbose=0)
    return time.perf_counter() - started


def decode_only(paths: list[Path], weights: Path, workers: int) -> float:
    """The decode + preprocess pipeline of xscan itself on WORKERS threads, no model; returns work seconds."""
    from xscan.model.card import read_card
    from xscan.scoring.pipeline import load_in_order

    size = read_card(weights).image_size
    started = time.perf_counter()
    for _ in load_in_order(paths, size, workers, lookahead=64 + 4 * workers):
        pass
    return time.perf_counter() - started


def child_main(method: str, folder: Path, limit: int, weights: Path, workers: int) -> None:
    paths = sorted(folder.iterdir())[:limit]
    if method == "naive":
        work = naive(paths, weights)
    elif method == "load-everything":
        work = load_everything(paths, weights)
    else:
        work = decode_only(paths, weights, workers)
    print(json.dumps({"images": len(paths), "work": work}))


# ---- running the children and measuring them ------------------------------------------------------


def child_env(code: Path = REPO) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(code), "TF_CPP_MIN_LOG_LEVEL": "2"}


def run_method(method: str, folder: Path, count: int, weights: Path, workers: int, naive_limit: int) -> Run:
    limit = min(count, naive_limit) if method == "naive" else count
    command = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--folder",
        str(folder),
        "--limit",
        str(limit),
        "--weights",
        str(weights),
        "--workers",
        str(workers),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=child_env())
    stdout = process.stdout.read()  # the child prints one JSON line at its end
    exit_code, peak_rss_mb = reap(process, block=True)
    wall = time.perf_counter() - started
    if exit_code != 0:
        sys.exit(f"{method} failed with exit code {exit_code}")
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    return Run(result["images"], wall, result["work"], peak_rss_mb)


def reap(process: subprocess.Popen, block: bool) -> tuple[int | None, float]:
    """(exit code or None while running, peak resident memory in MB) of this one child."""
    pid, status, usage = os.wait4(process.pid, 0 if block else os.WNOHANG)
    if pid:
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024  # Linux reports kilobytes


def run_xscan(folder: Path, count: int, weights: Path, workers: int, out: Path, code: Path = REPO) -> Run:
    """`xscan score` of CODE as a real subprocess; the CSV is watched to time its rows as they appear."""
    command = [
        str(Path(sys.executable).with_name("xscan")),
        "score",
        str(folder),
        "-o",
        str(out),
        "--quiet",
        "--weights",
        str(weights),
        "--workers",
        str(workers),
    ]
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env(code))
    seen: list[tuple[float, int]] = []  # (seconds since start, data rows so far) at each change
    rows, offset = -1, 0  # -1: the header line is not a row
    while True:
        exit_code, peak_rss_mb = reap(process, block=False)
        if out.exists():
            with open(out, "rb") as stream:
                stream.seek(offset)
                chunk = stream.read()
            offset += len(chunk)
            if chunk.count(b"\n"):
                rows += chunk.count(b"\n")
                seen.append((time.perf_counter() - started, rows))
        if exit_code is not None:
            break
        time.sleep(0.01)
    wall = time.perf_counter() - started
    if exit_code != 0 or rows != count:
        sys.exit(f"xscan score failed: exit code {exit_code}, {rows} rows")
    first_row = next(at for at, so_far in seen if so_far > 0)
    # Steady state: between 20 % and 80 % of the rows, when the look-ahead queue is full at both
    # ends; before that, files decoded while the model loaded would flatter the rate.
    begin = next((at, so_far) for at, so_far in seen if so_far >= 0.2 * count)
    end = next((at, so_far) for at, so_far in seen if so_far >= 0.8 * count)
    if end[1] == begin[1]:  # too few batches to see a steady state
        return Run(count, wall, wall, peak_rss_mb, first_row)
    return Run(end[1] - begin[1], wall, end[0] - begin[0], peak_rss_mb, first_row)


# ---- the table ------------------------------------------------------------------------------------


@dataclass
class Summary:
    method: str
    count: int
    end_to_end: float  # images per second, process start to exit (extrapolated for a naive subset)
    steady: float  # images per second of the work alone
    peak_rss_mb: float
    first_row: float | None
    note: str


def summarize(method: str, count: int, runs: list[Run]) -> Summary:
    steady = statistics.median(run.images / run.work for run in runs)
    start_up = statistics.median(run.wall - run.work for run in runs)
    if method in CLI_METHODS:
        end_to_end = statistics.median(count / run.wall for run in runs)
    else:
        end_to_end = count / (start_up + count / steady)
    subset = runs[0].images
    note = f"extrapolated from {subset} images" if method == "naive" and subset < count else ""
    first = statistics.median(run.first_row for run in runs) if runs[0].first_row is not None else None
    return Summary(method, count, end_to_end, steady, max(run.peak_rss_mb for run in runs), first, note)


def table(summaries: list[Summary]) -> str:
    lines = [
        "| N | method | images/s end-to-end | images/s steady | peak RSS MB | note |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for s in summaries:
        note = s.note + (f"first row after {s.first_row:.2f} s" if s.first_row is not None else "")
        lines.append(f"| {s.count} | {s.method} | {s.end_to_end:.1f} | {s.steady:.1f} | {s.peak_rss_mb:.0f} | {note} |")
    return "\n".join(lines)


def _versus(x: Summary, other: Summary | None, digits: int) -> str:
    if other is None:
        return "not run"
    return f"{x.end_to_end / other.end_to_end:.{digits}f}x ({x.steady / other.steady:.{digits}f}x steady)"


def ratios(summaries: list[Summary]) -> str:
    lines = [
        "| N | xscan / naive | xscan / load-everything | xscan / decode-only (steady) | first row s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for count in sorted({s.count for s in summaries}):
        by = {s.method: s for s in summaries if s.count == count}
        for name in CLI_METHODS:
            x = by.get(name)
            if x is None:
                continue
            floor = f"{100 * x.steady / by['decode-only'].steady:.0f} %" if "decode-only" in by else "not run"
            label = count if name == "xscan" else f"{count} (baseline)"
            lines.append(
                f"| {label} | {_versus(x, by.get('naive'), 1)} | {_versus(x, by.get('load-everything'), 2)} "
                f"| {floor} | {x.first_row:.2f} |"
            )
    return "\n".join(lines)


def benchmark(
    sizes: list[int],
    repeats: int,
    weights: Path,
    workers: int,
    naive_limit: int,
    methods: tuple[str, ...] = METHODS,
    baseline: Path | None = None,
) -> list[Summary]:
    """Each repeat runs every method once, in turn: a noisy neighbour slows all of them, not one."""
    summaries = []
    with tempfile.TemporaryDirectory(prefix="xscan-bench-") as tmp:
        for count in sizes:
            folder = build_folder(Path(tmp), count)
            runs: dict[str, list[Run]] = {method: [] for method in methods}
            for repeat in range(repeats):
                for method in methods:
                    if method in CLI_METHODS:
                        code = REPO if method == "xscan" else baseline
                        run = run_xscan(
                            folder,
                            count,
                            weights if method == "xscan" else baseline / "weights",
                            workers,
                            Path(tmp) / "results.csv",
                            code,
                        )
                    else:
                        run = run_method(method, folder, count, weights, workers, naive_limit)
                    runs[method].append(run)
                    print(
                        f"N={count} {method} run {repeat + 1}: {run.images / run.work:.1f} images/s steady",
                        file=sys.stderr,
                        flush=True,
                    )
            summaries += [summarize(method, count, runs[method]) for method in methods]
    return summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="comma-separated folder sizes N")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method and size; the median is reported")
    parser.add_argument("--weights", type=Path, default=REPO / "weights", help="weights folder")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="decoding threads for xscan and decode-only"
    )
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: " + ", ".join(METHODS))
    parser.add_argument(
        "--naive-limit", type=int, default=100, help="most images the naive loop runs on; beyond, extrapolated"
    )
    parser.add_argument(
        "--baseline", type=Path, help="another checkout whose `xscan score` runs too (with its own weights/)"
    )
    parser.add_argument("--child", choices=[m for m in METHODS if m != "xscan"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.folder, args.limit, args.weights, args.workers)
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    methods = tuple(method.strip() for method in args.methods.split(","))
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown method(s): {', '.join(sorted(unknown))}")
    if args.baseline:
        methods = (*methods, "baseline")
    summaries = benchmark(sizes, args.repeats, args.weights, args.workers, args.naive_limit, methods, args.baseline)
    print(f"\n{os.cpu_count()} CPUs, {args.workers} decoding threads, median of {args.repeats} runs\n")
    print(table(summaries))
    print()
    print(ratios(summaries))


if __name__ == "__main__":
    main()
