"""Start-up benchmark: `xscan score` on the 8 bundled sample scans as a real process, this checkout against a baseline.

Each run is a fresh process (nothing imported beforehand, files in the page cache after the first
run); the runs of the two codes alternate, so a noisy neighbour slows both. Prints a Markdown table
of medians: time to the first row in the CSV and to exit (both from process start), peak RSS.

    git archive <commit> | tar -x -C /tmp/baseline
    PYTHONPATH=$PWD python benchmarks/startup.py --baseline /tmp/baseline --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import REPO, Run, run_xscan  # noqa: E402  (the same CLI runner and row watcher)

SAMPLES = REPO / "tests" / "data" / "scans"
COUNT = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with (its own weights/)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each code; the median is reported")
    parser.add_argument("--workers", type=int, default=2, help="decoding threads")
    args = parser.parse_args()
    codes = {"now": REPO, **({"baseline": args.baseline} if args.baseline else {})}
    runs: dict[str, list[Run]] = {name: [] for name in codes}
    with tempfile.TemporaryDirectory(prefix="xscan-startup-") as tmp:
        for repeat in range(args.repeats):
            for name, code in codes.items():
                run = run_xscan(SAMPLES, COUNT, code / "weights", args.workers, Path(tmp) / "results.csv", code)
                runs[name].append(run)
                print(
                    f"{name} run {repeat + 1}: first row {run.first_row:.2f} s, exit {run.wall:.2f} s, "
                    f"{run.peak_rss_mb:.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )
    print(f"\n`xscan score` of the {COUNT} sample scans, median of {args.repeats} runs\n")
    print("| code | first row s | end to end s | peak RSS MB |\n| --- | ---: | ---: | ---: |")
    for name, done in runs.items():
        print(
            f"| {name} | {statistics.median(r.first_row for r in done):.2f} | "
            f"{statistics.median(r.wall for r in done):.2f} "
            f"| {statistics.median(r.peak_rss_mb for r in done):.0f} |"
        )
    if args.baseline:
        now, base = (statistics.median(r.wall for r in runs[name]) for name in ("now", "baseline"))
        print(f"\nend to end, now / baseline: {now / base:.2f}")


if __name__ == "__main__":
    main()
