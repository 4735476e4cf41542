"""Ray's overhead on one machine: `xscan score` against `xscan score --ray` (a local cluster of this machine's CPUs).

Builds a folder of N full-resolution scans (symbolic links to ../shared/data/fullres, cycled, as
benchmarks/throughput.py does) and runs both as real CLI subprocesses on the same files, each
repeat running both in turn so that a noisy neighbour slows both. Prints Markdown tables.

    python benchmarks/ray_throughput.py --count 2000 --repeats 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from throughput import build_folder

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "tests"))  # the process-tree walk is the one the tests use
from support.processes import descendants  # noqa: E402

METHODS = ("local", "ray", "ray-steady")  # ray-steady: --ray with RAY_STEADY_ENV, for the steady rate
SAMPLE_S = 0.2  # how often the CSV, CPU time and memory are read

# The CLI in this interpreter, writing its own peak resident memory (VmHWM) to a file as it exits:
# the driver's alone, where the wait4 figure of throughput.py would take in Ray's processes it reaped.
DRIVER = """
import atexit, sys
def peak(path):
    with open("/proc/self/status") as status, open(path, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(peak, sys.argv[1])
from xscan.cli import app
sys.argv = ["xscan", *sys.argv[2:]]
app()
"""

# For the steady rate only ("ray-steady"), two of Ray's defaults are changed. Ray Data starts the scoring actors
# while the decoding tasks already run, so when the first row appears a backlog of decoded scans is
# waiting, and a rate read off the rows would count it: here the pipeline waits for its actors
# before it decodes anything. And Ray runs its workers at niceness 15, so on a shared machine
# every other process (a training job, say) takes the cores from them first, where the local
# pipeline competes at its own niceness: here they run at the driver's, as the local pipeline does.
RAY_STEADY_ENV = {"RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S": "600", "RAY_worker_niceness": "0"}


@dataclass
class Run:
    wall: float  # process start to exit, seconds
    first_row: float  # process start to the first data row in the CSV
    steady: float  # images a second between 20 % and 80 % of the rows
    cpu_ms: float  # CPU milliseconds an image in that window, of the driver and every process it started
    driver_mb: float  # the driver's peak resident memory
    all_mb: float  # peak proportional set size of the driver and every process it started (Ray's, with --ray)


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User plus system CPU seconds each of PIDS has used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime: fields 14 and 15 of stat
    return used


def pss_mb(pids: list[int]) -> float:
    """Proportional set size of PIDS together: shared pages (Ray's object store) counted once, split among them."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")), 0)
    return total / 1024


def run_cli(method: str, folder: Path, count: int, out: Path, tmp: Path) -> Run:
    """One `xscan score` run, its process tree sampled every SAMPLE_S: rows in the CSV, CPU time, memory."""
    peak_file = tmp / "driver-peak-kb"
    command = [sys.executable, "-c", DRIVER, str(peak_file), "score", str(folder), "-o", str(out), "--quiet"]
    env = {
        key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"
    }  # a local cluster, started by the run
    env |= {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    if method.startswith("ray"):
        command.append("--ray")
    if method == "ray-steady":
        env |= RAY_STEADY_ENV
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    samples: list[tuple[float, int, float]] = []  # (seconds since start, rows written, CPU seconds so far)
    cpu: dict[int, float] = {}  # latest CPU seconds of each process seen; those that ended keep their last reading
    all_mb = 0.0
    while process.poll() is None:
        tree = descendants(process.pid)
        cpu |= cpu_seconds(tree)
        all_mb = max(all_mb, pss_mb(tree))
        rows = out.read_bytes().count(b"\r\n") - 1 if out.exists() else 0
        samples.append((time.perf_counter() - started, rows, sum(cpu.values())))
        time.sleep(SAMPLE_S)
    wall = time.perf_counter() - started
    rows = out.read_bytes().count(b"\r\n") - 1 if out.exists() else -1
    if process.returncode != 0 or rows != count:
        sys.exit(
            f"xscan score ({method}) failed: exit code {process.returncode}, {rows} rows\n"
            f"{process.stderr.read().decode()}"
        )
    first_row = next((at for at, so_far, _ in samples if so_far > 0), wall)
    begin = next(sample for sample in samples if sample[1] >= 0.2 * count)
    end = next(sample for sample in samples if sample[1] >= 0.8 * count)
    if end[1] == begin[1] or end[0] == begin[0]:  # too few files for a window of steady state between two samples
        return Run(wall, first_row, math.nan, math.nan, int(peak_file.read_text()) / 1024, all_mb)
    steady = (end[1] - begin[1]) / (end[0] - begin[0])
    cpu_ms = 1000 * (end[2] - begin[2]) / (end[1] - begin[1])
    return Run(wall, first_row, steady, cpu_ms, int(peak_file.read_text()) / 1024, all_mb)


def median_run(runs: list[Run]) -> Run:
    """Each figure's median over RUNS (memory: the largest)."""
    return Run(
        *(statistics.median(getattr(run, name) for run in runs) for name in ("wall", "first_row", "steady", "cpu_ms")),
        max(run.driver_mb for run in runs),
        max(run.all_mb for run in runs),
    )


def tables(count: int, runs: dict[str, list[Run]], cpus: int) -> str:
    lines = [
        "| method | wall s | images/s end-to-end | first row s | images/s steady | CPU ms an image (steady) "
        "| driver peak RSS MB | all processes peak PSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    medians = {method: median_run(method_runs) for method, method_runs in runs.items()}
    for method, m in medians.items():
        lines.append(
            f"| {method} | {m.wall:.1f} | {count / m.wall:.1f} | {m.first_row:.1f} | {m.steady:.1f} | {m.cpu_ms:.1f} "
            f"| {m.driver_mb:.0f} | {m.all_mb:.0f} |"
        )

    # The median of the per-repeat ratios: a repeat's runs shared the machine's mood.
    def ratio(figure, method: str) -> str:
        ratios = (figure(here, there) for here, there in zip(runs["local"], runs[method], strict=True))
        return f"{100 * statistics.median(ratios):.0f} %"

    lines += [
        "",
        "| against local (median of the per-repeat ratios) | ray | ray-steady |",
        "|---|---:|---:|",
        f"| steady rate | | {ratio(lambda here, there: there.steady / here.steady, 'ray-steady')} |",
        "| rate from CPU time an image (every core busy) | "
        f"| {ratio(lambda here, there: here.cpu_ms / there.cpu_ms, 'ray-steady')} |",
        f"| end-to-end rate | {ratio(lambda here, there: here.wall / there.wall, 'ray')} | |",
        "",
        f"Per CPU, steady: local {medians['local'].steady / cpus:.1f}, "
        f"ray-steady {medians['ray-steady'].steady / cpus:.1f} "
        f"images/s; from CPU time: local {1000 / medians['local'].cpu_ms:.1f}, ray-steady "
        f"{1000 / medians['ray-steady'].cpu_ms:.1f} images/s.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="files in the folder")
    parser.add_argument("--repeats", type=int, default=4, help="runs of each method; medians are reported")
    args = parser.parse_args()
    runs: dict[str, list[Run]] = {method: [] for method in METHODS}
    with tempfile.TemporaryDirectory(prefix="xscan-ray-bench-") as tmp:
        folder = build_folder(Path(tmp), args.count)
        for repeat in range(args.repeats):
            for method in METHODS:
                run = run_cli(method, folder, args.count, Path(tmp) / "results.csv", Path(tmp))
                runs[method].append(run)
                print(
                    f"{method} run {repeat + 1}: {json.dumps({k: round(v, 2) for k, v in asdict(run).items()})}",
                    file=sys.stderr,
                    flush=True,
                )
    cpus = os.cpu_count() or 1
    print(
        f"\nN = {args.count}, {cpus} CPUs; --ray starts a local cluster of {cpus} CPUs each run; "
        f"median of {args.repeats} runs\n"
    )
    print(tables(args.count, runs, cpus))


if __name__ == "__main__":
    main()
