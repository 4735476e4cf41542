"""Fuzz `load_scan` with a seeded mutation corpus (tests/support/fuzz.py) and print what became of each file.

    python benchmarks/fuzz.py --count 20000 [--seed 0] [--workers 2]

Decode only (no model), on WORKERS threads as a run decodes, inside a run's warning and native-stderr
capture. Prints: files per mutation kind and outcome (scored, error, skipped, escaped), files per
error message (numbers and quoted values folded), the slowest files, and peak RSS for the corpus
against as many ordinary films (the seeds themselves, unmutated) decoded the same way. Any
exception escaping `load_scan` is counted and listed: there should be none.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.fuzz import seeds, write_corpus  # noqa: E402

from xscan.errors import printable  # noqa: E402
from xscan.input.file_warnings import collected, warnings_kept  # noqa: E402
from xscan.input.native_messages import native_messages_kept  # noqa: E402
from xscan.scoring.options import DicomOptions  # noqa: E402
from xscan.scoring.pipeline import load_scan  # noqa: E402
from xscan.scoring.results import SKIPPED_PREFIX  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
IMAGE_SIZE = 224


def timed_load(path: Path) -> tuple[Path, float, str, str]:
    """(path, seconds, outcome, error) of one file; outcome 'escaped' when load_scan raised."""
    started = time.perf_counter()
    try:
        with collected():
            loaded = load_scan(path, IMAGE_SIZE, DicomOptions())
    except Exception as error:  # what this benchmark is here to count
        return path, time.perf_counter() - started, "escaped", f"{type(error).__name__}: {error}"
    outcome = (
        "scored"
        if loaded.model_input is not None
        else "skipped"
        if loaded.error.startswith(SKIPPED_PREFIX)
        else "error"
    )
    return path, time.perf_counter() - started, outcome, loaded.error


def decode_all(paths: list[Path], workers: int) -> list[tuple[Path, float, str, str]]:
    with warnings_kept(), native_messages_kept(), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(timed_load, paths))


def folded(error: str) -> str:
    """An error message with its numbers and quoted values folded, so that one kind of error is one line."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]?", "'…'", error)
    return printable(re.sub(r"\d+", "N", text), 110).replace("|", "/")


def table(title: str, header: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def peak_rss_mib(mode: str, count: int, seed: int, workers: int) -> float:
    """Peak RSS of a child process that decodes COUNT files.

    MODE is 'fuzzed' (the corpus) or 'ordinary' (unmutated seeds).
    """
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--rss-child",
            mode,
            "--count",
            str(count),
            "--seed",
            str(seed),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the {mode} child failed")
    return usage.ru_maxrss / 1024


def corpus_paths(mode: str, count: int, seed: int, folder: Path) -> list[Path]:
    sources = seeds(DATA, fullres=True)
    if mode == "fuzzed":
        return [file.path for file in write_corpus(folder, count, seed, sources)]
    paths = []
    for index in range(count):
        source = sources[index % len(sources)]
        path = folder / f"{index:05d}-{source.name}{source.suffix}"
        path.write_bytes(source.data)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slowest", type=int, default=10)
    parser.add_argument("--rss-child", choices=("fuzzed", "ordinary"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.rss_child:
            decode_all(corpus_paths(args.rss_child, args.count, args.seed, Path(folder)), args.workers)
            return
        made = write_corpus(Path(folder), args.count, args.seed, seeds(DATA, fullres=True))
        started = time.perf_counter()
        results = decode_all([file.path for file in made], args.workers)
        seconds = time.perf_counter() - started
    kinds = {file.path: file.mutation for file in made}
    outcomes = Counter((kinds[path], outcome) for path, _, outcome, _ in results)
    names = ("scored", "error", "skipped", "escaped")
    print(f"{len(results)} fuzzed files (seed {args.seed}), decoded on {args.workers} threads in {seconds:.1f} s")
    table(
        "Outcome per mutation kind",
        ("mutation", *names),
        [(kind, *(outcomes[kind, name] for name in names)) for kind in sorted({kind for kind, _ in outcomes})],
    )
    messages = Counter(folded(error) for _, _, outcome, error in results if outcome != "scored")
    table(
        "Files per error message (numbers and quoted values folded)",
        ("files", "error"),
        [(count, f"`{message}`") for message, count in messages.most_common()],
    )
    slowest = sorted(results, key=lambda result: result[1], reverse=True)[: args.slowest]
    table(
        "Slowest files",
        ("seconds", "file", "outcome"),
        [(f"{took:.3f}", path.name, outcome) for path, took, outcome, _ in slowest],
    )
    escaped = [(path.name, error) for path, _, outcome, error in results if outcome == "escaped"]
    for name, error in escaped:
        print(f"ESCAPED {name}: {error}")
    fuzzed = peak_rss_mib("fuzzed", args.count, args.seed, args.workers)
    ordinary = peak_rss_mib("ordinary", args.count, args.seed, args.workers)
    table(
        "Peak RSS, decoding in a child process",
        ("files", "peak RSS (MiB)"),
        [
            (f"{args.count} ordinary films (the seeds, unmutated)", f"{ordinary:.0f}"),
            (f"{args.count} fuzzed files", f"{fuzzed:.0f}"),
        ],
    )
    sys.exit(1 if escaped else 0)


if __name__ == "__main__":
    main()
