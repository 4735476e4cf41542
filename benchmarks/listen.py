"""`xscan listen` benchmark: films received and scored a second against `xscan score`; latency, memory.

Builds N DICOM films (DX copies of ../shared/data/fullres, cycled) in studies of F films, then in the same run:

1. `xscan score FOLDER -o CSV --quiet` as a process: films per second, process start to exit;
2. `xscan listen` as a process with `--send` to a pynetdicom storage SCP run here, while A
   dcmtk `storescu` senders each send their share of the studies, in one association each (with
   --association-per-study, one per study: A associations at any moment): films per second from
   the first send to the moment the results hold every film; for each study, the time from its
   last instance acknowledged to its report stored on the SCP; the listener's peak resident
   memory (VmHWM).

    python benchmarks/listen.py --films 300 --per-study 3 --associations 3 --quiet-period 5
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from support.pacs import film_dataset  # noqa: E402  (the tests' DX film, on the path just set)

FULLRES = REPO.parent / "shared" / "data" / "fullres"
STORESCU = "/usr/bin/storescu"  # dcmtk's; a pip `storescu` may come first on PATH


def build_films(folder: Path, films: int, per_study: int) -> list[Path]:
    """FILMS DX films of real full-resolution scans, PER_STUDY to a study folder; returns the study folders."""
    sources = sorted(p for p in FULLRES.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    if not sources:
        sys.exit(f"no full-resolution scans found in {FULLRES}")
    greys = {}
    studies = -(-films // per_study)
    folders = [folder / f"study-{s:04d}" for s in range(studies)]
    for path in folders:
        path.mkdir(parents=True)
    for index in range(films):
        study = index // per_study
        source = sources[index % len(sources)]
        grey = greys.setdefault(source, cv2.imread(str(source), cv2.IMREAD_GRAYSCALE))
        study_uid = generate_uid(entropy_srcs=["xscan listen benchmark", str(study)])
        ds = film_dataset(grey, f"B{study}", study_uid, index + 1, accession=f"B{study}")
        ds.save_as(folders[study] / f"{index:05d}.dcm", enforce_file_format=True)
    return folders


def time_score(folder: Path, output: Path) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "xscan.cli", "score", str(folder), "-o", str(output), "--quiet"], check=True)
    return time.monotonic() - started


class Destination:
    """A pynetdicom storage SCP that records when each study's report arrived."""

    def __init__(self) -> None:
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import Comprehensive3DSRStorage, SecondaryCaptureImageStorage

        self.arrived: dict[str, float] = {}
        ae = AE(ae_title="DEST")
        ae.add_supported_context(Comprehensive3DSRStorage)
        ae.add_supported_context(SecondaryCaptureImageStorage)
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = self.server.server_address[1]

    def _store(self, event: object) -> int:
        if event.request.AffectedSOPClassUID.endswith(".88.34"):  # the SR, not a heatmap
            self.arrived[str(event.dataset.StudyInstanceUID)] = time.monotonic()
        return 0x0000


def storescu(port: int, paths: list[str], study_of: dict[str, str]) -> dict[str, float]:
    """Send PATHS in one association; when each study's last instance was acknowledged (from `storescu -v`)."""
    last: dict[str, float] = {}
    sending = ""
    with subprocess.Popen(
        [STORESCU, "-v", "127.0.0.1", str(port), *paths], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        for line in process.stdout:
            if "Sending file: " in line:
                sending = line.split("Sending file: ", 1)[1].strip()
            elif "Received Store Response (Success)" in line:
                last[study_of[sending]] = time.monotonic()
    if process.returncode:
        sys.exit(f"storescu failed ({process.returncode})")
    return last


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_listener(
    root: Path, studies: list[Path], films: int, associations: int, quiet_period: float, per_study: bool
) -> dict[str, float]:
    import pydicom

    from xscan.scoring.results import read_rows

    destination = Destination()
    store, log = root / "store", root / "listen.log"
    port_probe = __import__("socket").socket()
    port_probe.bind(("127.0.0.1", 0))
    port = port_probe.getsockname()[1]
    port_probe.close()
    listener = subprocess.Popen(
        [sys.executable, "-m", "xscan.cli", "listen", "--store", str(store), "--port", str(port)]
        + ["--quiet-period", str(quiet_period), "--send", f"DEST@127.0.0.1:{destination.port}"]
        + ["--log-file", str(log), "--quiet"]
    )
    while "listening on port" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.1)
    uids = {
        str(pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).StudyInstanceUID): folder
        for folder in studies
    }
    acknowledged: dict[str, float] = {}

    def send(share: list[tuple[str, Path]]) -> None:
        batches = [[item] for item in share] if per_study else [share]
        for batch in batches:
            study_of = {str(path): uid for uid, folder in batch for path in sorted(folder.iterdir())}
            acknowledged.update(storescu(port, list(study_of), study_of))

    started = time.monotonic()
    items = list(uids.items())
    senders = [threading.Thread(target=send, args=(items[a::associations],)) for a in range(associations)]
    for sender in senders:
        sender.start()
    results = store / "results.csv"
    while True:  # every film has its row: received and scored
        try:
            if results.exists() and sum(1 for _ in read_rows(results)) >= films:
                break
        except OSError:
            pass
        time.sleep(0.2)
    scored = time.monotonic() - started
    for sender in senders:
        sender.join()
    while len(destination.arrived) < len(uids):
        time.sleep(0.1)
    peak = peak_rss_mb(listener.pid)
    listener.terminate()
    listener.wait(timeout=120)
    destination.server.shutdown()
    latencies = [destination.arrived[uid] - acknowledged[uid] for uid in uids]
    return {
        "seconds": scored,
        "latency_median": statistics.median(latencies),
        "latency_max": max(latencies),
        "rss": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=300)
    parser.add_argument("--per-study", type=int, default=3, help="films per study")
    parser.add_argument("--associations", type=int, default=3, help="senders at once")
    parser.add_argument("--association-per-study", action="store_true", help="one association per study")
    parser.add_argument("--quiet-period", type=float, default=5.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="xscan-listen-bench-"))
    try:
        films = root / "films"
        studies = build_films(films, args.films, args.per_study)
        score_seconds = time_score(films, root / "score.csv")
        listened = run_listener(
            root, studies, args.films, args.associations, args.quiet_period, args.association_per_study
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    score_rate, listen_rate = args.films / score_seconds, args.films / listened["seconds"]
    print(
        f"{args.films} films in studies of {args.per_study}, {args.associations} associations at once"
        f"{' (one per study)' if args.association_per_study else ''}; "
        f"quiet period {args.quiet_period:g} s\n"
    )
    print("| measure | value | goal |")
    print("| --- | --- | --- |")
    print(f"| `xscan score` (process start to exit) | {score_rate:.1f} films/s | |")
    print(f"| `xscan listen`: first send to every film scored | {listen_rate:.1f} films/s | |")
    print(f"| ratio | {listen_rate / score_rate:.2f} | >= 0.8 |")
    print(
        f"| last instance to report stored, median (max) | {listened['latency_median']:.1f} s "
        f"({listened['latency_max']:.1f} s) | <= {args.quiet_period + 5:g} s |"
    )
    print(f"| listener peak RSS | {listened['rss']:.0f} MB | <= 300 MB |")


if __name__ == "__main__":
    main()
