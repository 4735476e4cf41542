"""Issue 13, as cron sees it: each case a real `xscan score` process, its exit code, its rows and the files beside -o.

Most runs replace only the network with a stand-in (tests/support/stand_in.py: the bundled model's card,
the mean of each model input as its probability), so that no TensorFlow loads: a run takes a second or two, and nothing
these tests check depends on the network; everything else (the command line, walk, resume, lock,
journal, decoders, writer) is the real one. The run whose point is the real thing, peak memory,
loads the bundled model; tests/cli/test_cli_exit_codes.py runs it for exit codes too.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid
from support.data import REPO, real_scans
from support.dicom import write_dicom
from support.processes import ENV

from xscan.errors import EXIT_FATAL, EXIT_OK, EXIT_SOFTWARE, EXIT_SOME_FAILED, EXIT_USAGE
from xscan.input.limits import MAX_FILE_BYTES
from xscan.scoring.journal import CRASHED_TWICE, RAISED_TWICE
from xscan.scoring.results import escape_cell, read_table
from xscan.scoring.state import state_path

pytestmark = pytest.mark.slow  # each test runs xscan score in real processes, as cron does

STAND_IN = """
import sys
import xscan.scoring.run
from support.stand_in import StandIn, stand_in_loader

xscan.scoring.run.load_scorer = stand_in_loader
{extra}
from xscan.cli import app
app(sys.argv[1:], prog_name="xscan")
"""


def command(*args: object, model: bool = False, extra: str = "") -> list[str]:
    """`xscan ARGS` in a process of its own: the bundled MODEL, or the stand-in with EXTRA code run first."""
    start = [sys.executable, "-m", "xscan.cli"] if model else [sys.executable, "-c", STAND_IN.format(extra=extra)]
    return [*start, *map(str, args)]


def xscan(
    *args: object, model: bool = False, extra: str = "", cwd: Path | None = None, **kwargs
) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(*args, model=model, extra=extra),
        env=ENV,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def rows(out: Path) -> dict[str, dict[str, str]]:
    """The records of a results file (as xscan reads them back) by file name."""
    return {Path(record["path"]).name: record for record in read_table(out).records}


def copy_scans(folder: Path, names: list[str], label: str = "NORMAL") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for source, name in zip(real_scans(label, len(names)), names, strict=True):
        shutil.copy(source, folder / name)


def grey_scan() -> np.ndarray:
    return cv2.imread(str(real_scans("NORMAL", 1)[0]), cv2.IMREAD_GRAYSCALE)


# ---- exit codes that can alarm


def test_policy_skips_exit_0_are_counted_apart_and_are_not_read_again(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    copy_scans(folder, ["frontal.jpeg"])
    write_dicom(folder / "ct.dcm", grey_scan(), Modality="CT")
    write_dicom(folder / "lateral.dcm", grey_scan(), ViewPosition="LL")
    out, log = tmp_path / "r.csv", tmp_path / "xscan.log"
    first = xscan("score", folder, "-o", out, "--log-file", log)
    assert first.returncode == EXIT_OK, first.stderr
    assert "scored 1, failed 0 in " in first.stderr and first.stderr.rstrip().endswith(
        "; 2 skipped by the DICOM policy"
    )
    assert {name: row["error"] for name, row in rows(out).items()} == {
        "ct.dcm": "skipped: Modality CT, not a radiograph",
        "frontal.jpeg": "",
        "lateral.dcm": "skipped: lateral view (ViewPosition LL)",
    }
    again = xscan("score", folder, "-o", out, "--log-file", log)
    assert (
        again.returncode == EXIT_OK
        and "scored 0, failed 0 in " in again.stderr
        and "; 3 unchanged, not read again" in again.stderr
    )
    assert " scored=0 unchanged=3 skipped=0 failed=0 " in log.read_text().splitlines()[-1]
    rescored = xscan("score", folder, "-o", out, "--no-dicom-filter")  # the policy off: what it skipped is scored now
    assert rescored.returncode == EXIT_OK and "scored 2, failed 0 in " in rescored.stderr


def test_a_broken_install_exits_1_and_the_documented_cron_line_mails_for_it(tmp_path: Path) -> None:
    broken = tmp_path / "site"
    broken.mkdir()
    (broken / "typer.py").write_text('raise ImportError("simulated broken install")\n')
    done = subprocess.run(
        command("score", tmp_path, "-o", tmp_path / "r.csv", model=True),
        capture_output=True,
        text=True,
        env={**ENV, "PYTHONPATH": f"{broken}{os.pathsep}{REPO}"},
        timeout=60,
    )
    assert done.returncode == 1 and "ImportError: simulated broken install" in done.stderr
    # The cron line of docs/reliability.md, with stand-ins for xscan (exits as told) and mail (leaves a file).
    block = (REPO / "docs" / "reliability.md").read_text().split("```cron\n", 1)[1].split("```", 1)[0]
    entry = next(line for line in block.splitlines() if line.strip() and not line.startswith("#"))
    cron_command = entry.split(None, 5)[5]
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    (bin_folder / "xscan").write_text('#!/bin/sh\nexit "$XSCAN_EXIT"\n')
    (bin_folder / "mail").write_text('#!/bin/sh\ncat > "$MAILED"\n')
    for script in bin_folder.iterdir():
        script.chmod(0o755)
    mailed = {}
    for code in (0, 1, 2, 3, 4, 70, 130, 143):
        marker = tmp_path / f"mailed-{code}"
        subprocess.run(
            ["sh", "-c", cron_command],
            env={
                **os.environ,
                "PATH": f"{bin_folder}{os.pathsep}{os.environ['PATH']}",
                "XSCAN_EXIT": str(code),
                "MAILED": str(marker),
            },
            timeout=60,
        )
        mailed[code] = marker.exists()
    assert mailed == {0: False, 1: True, 2: True, 3: True, 4: False, 70: True, 130: True, 143: True}


@pytest.mark.parametrize(
    ("failure", "code", "message"),
    [
        (
            "TypeError",
            EXIT_SOFTWARE,
            "unexpected TypeError: pixel_array() got an unexpected keyword argument 'index'",
        ),  # a pydicom API change
        ("MemoryError", EXIT_FATAL, "out of memory (MemoryError)"),  # not a bug: xscan could not do it
        ("KeyError", EXIT_SOFTWARE, "unexpected KeyError: 'Modality'"),  # a bug in xscan's own code
    ],
)
def test_a_bug_or_memory_error_while_decoding_is_fatal_not_a_night_of_error_rows(
    tmp_path: Path, failure: str, code: int, message: str
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    write_dicom(folder / "frontal.dcm", grey_scan())
    patch = {
        "TypeError": "def broken(*args, **kwargs):\n"
        "    raise TypeError(\"pixel_array() got an unexpected keyword argument 'index'\")\n"
        "xscan.input.dicom.image.pixel_array = broken",
        "MemoryError": "def broken(*args, **kwargs):\n"
        "    raise MemoryError\nxscan.input.dicom.image.pixel_array = broken",
        "KeyError": "xscan.scoring.pipeline.skip_reason = lambda ds: {}['Modality']",
    }[failure]
    done = xscan(
        "score",
        folder,
        "-o",
        tmp_path / "r.csv",
        extra=f"import xscan.input.dicom.image, xscan.scoring.pipeline\n{patch}",
    )
    assert done.returncode == code, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert rows(tmp_path / "r.csv") == {}


def damaged_dicoms(folder: Path) -> dict[str, str]:
    """DICOMs damaged as fuzzing damaged them, by name, with the error pydicom (or xscan's header check) gives each."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, element, reason in (
        (
            "no-bits-stored.dcm",
            "BitsStored",
            "Missing required element: (0028,0101) 'Bits Stored'",
        ),  # pydicom's AttributeError
        (
            "no-pixel-representation.dcm",
            "PixelRepresentation",
            "Missing required element: (0028,0103) 'Pixel Representation'",
        ),
    ):
        ds = pydicom.dcmread(write_dicom(folder / name, grey_scan()))
        delattr(ds, element)
        ds.save_as(folder / name)
        expected[name] = f"cannot decode DICOM pixel data: {reason}"
    path = write_dicom(folder / "two-syntaxes.dcm", grey_scan())
    raw = path.read_bytes()  # the transfer syntax UID made two values by a flipped byte, as in the fuzzed corpus
    path.write_bytes(raw.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008\\1.2.1\x00", 1))
    expected["two-syntaxes.dcm"] = "DICOM transfer syntax is not one UID (['1.2.840.10008', '1.2.1'])"
    return expected


def test_what_a_decoder_raises_on_a_damaged_file_is_its_row_and_the_run_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    expected = damaged_dicoms(folder)
    copy_scans(folder, ["good.jpeg"])
    done = xscan("score", folder, "-o", tmp_path / "r.csv", "--quiet")
    assert done.returncode == EXIT_SOME_FAILED and done.stderr == ""
    assert {name: row["error"] for name, row in rows(tmp_path / "r.csv").items()} == expected | {"good.jpeg": ""}


@pytest.mark.parametrize(
    ("bug", "message"),
    [
        # xscan's own code raising inside the decoding boundaries: the same types a decoder raises, but a bug
        ("xscan.input.dicom.image.np = object()", "unexpected AttributeError: 'object' object has no attribute"),
        (
            "xscan.input.dicom.policy.RADIOGRAPH_MODALITIES = None",
            "unexpected TypeError: argument of type 'NoneType' is not",
        ),
    ],
)
def test_the_same_exception_from_xscans_own_code_is_exit_70(tmp_path: Path, bug: str, message: str) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    write_dicom(folder / "frontal.dcm", grey_scan(), WindowCenter=128, WindowWidth=256)
    done = xscan(
        "score",
        folder,
        "-o",
        tmp_path / "r.csv",
        extra=f"import xscan.input.dicom.image, xscan.input.dicom.policy\n{bug}",
    )
    assert done.returncode == EXIT_SOFTWARE, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


RAISE_AT_POISON = """
import xscan.input.dicom.image
real_grey_image = xscan.input.dicom.image.grey_image

def grey_image(ds, stream):
    if stream.name.endswith("poison.dcm"):
        raise KeyError("Modality")  # a bug in xscan that this one file brings out
    return real_grey_image(ds, stream)

xscan.input.dicom.image.grey_image = grey_image
xscan.input.decode.grey_image = grey_image
"""


def test_a_file_that_ended_two_runs_with_an_unexpected_error_is_not_opened_a_third_time(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    copy_scans(folder, ["a.jpeg", "b.jpeg"])
    write_dicom(folder / "poison.dcm", grey_scan())
    out = tmp_path / "r.csv"
    for _ in range(2):
        ended = xscan("score", folder, "-o", out, "--workers", "2", extra=RAISE_AT_POISON)
        assert ended.returncode == EXIT_SOFTWARE and "unexpected KeyError: 'Modality'" in ended.stderr, ended.stderr
    third = xscan(
        "score", folder, "-o", out, "--workers", "2", extra=RAISE_AT_POISON
    )  # would end again, were the file opened
    assert third.returncode == EXIT_SOME_FAILED, third.stderr
    errors = {name: row["error"] for name, row in rows(out).items()}
    assert errors == {"a.jpeg": "", "b.jpeg": "", "poison.dcm": RAISED_TWICE.format(error="KeyError: 'Modality'")}


def test_native_messages_while_the_weights_load_reach_stderr(tmp_path: Path) -> None:
    copy_scans(tmp_path / "export", ["a.jpeg"])
    loud = (
        "import os\ndef loud(weights, **options):\n"
        "    os.write(2, b'native note from the weights loader\\n')\n    return StandIn()\n"
        "xscan.scoring.run.load_scorer = loud"
    )
    done = xscan("score", tmp_path / "export", "-o", tmp_path / "r.csv", "--quiet", extra=loud)
    assert done.returncode == EXIT_OK and done.stderr == "native note from the weights loader\n"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux's")
def test_workers_default_to_the_cpus_this_process_may_use(tmp_path: Path) -> None:
    copy_scans(tmp_path / "export", ["a.jpeg"])
    log = tmp_path / "xscan.log"
    one_cpu = min(os.sched_getaffinity(0))
    done = xscan(
        "score",
        tmp_path / "export",
        "-o",
        tmp_path / "r.csv",
        "--log-file",
        log,
        preexec_fn=lambda: os.sched_setaffinity(0, {one_cpu}),
    )
    assert done.returncode == EXIT_OK and " workers=1 exit=0" in log.read_text()


# ---- one row per file, whatever path the user typed


def test_one_row_per_file_whichever_way_the_folder_is_typed(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    copy_scans(folder / "a", ["1.jpeg", "2.jpeg"])
    copy_scans(folder / "b", ["1.jpeg"], "PNEUMONIA")
    (tmp_path / "link").symlink_to(folder)
    out = tmp_path / "r.csv"
    assert xscan("score", "./export", "-o", "r.csv", cwd=tmp_path).returncode == EXIT_OK
    assert [record["path"] for record in read_table(out).records] == [
        "export/a/1.jpeg",
        "export/a/2.jpeg",
        "export/b/1.jpeg",
    ]
    for typed in (folder, tmp_path / "link"):
        again = xscan("score", typed, "-o", out)
        assert again.returncode == EXIT_OK and "scored 0, failed 0" in again.stderr and "3 unchanged" in again.stderr, (
            again.stderr
        )
        records = read_table(out).with_state()  # the resolved paths are in the state file
        assert [record["path"] for record in records] == [
            str(typed / "a" / "1.jpeg"),
            str(typed / "a" / "2.jpeg"),
            str(typed / "b" / "1.jpeg"),
        ]
        assert {record["resolved_path"] for record in records} == {str(path) for path in folder.rglob("*.jpeg")}
    # Replaced in place by other bytes of the same size, the modification time put back: its ctime tells.
    victim = folder / "a" / "2.jpeg"
    status, data = victim.stat(), bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(status.st_atime_ns, status.st_mtime_ns))
    changed = xscan("score", folder, "-o", out)
    assert "scored 1, failed 0" in changed.stderr and "2 unchanged" in changed.stderr, changed.stderr
    other = tmp_path / "other"
    copy_scans(other, ["1.jpeg"])
    refused = xscan("score", other, "-o", out)
    assert (
        refused.returncode == EXIT_USAGE
        and "holds rows of files outside" in refused.stderr
        and len(read_table(out).records) == 3
    )


def test_dicom_tags_asked_for_later_fill_the_rows_of_unchanged_files(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    copy_scans(folder, ["a.jpeg"])
    write_dicom(folder / "frontal.dcm", grey_scan(), AccessionNumber="ACC-1")
    write_dicom(folder / "ct.dcm", grey_scan(), Modality="CT", AccessionNumber="ACC-2")
    out = tmp_path / "r.csv"
    assert xscan("score", folder, "-o", out).returncode == EXIT_OK
    tagged = xscan("score", folder, "-o", out, "--dicom-tags", "AccessionNumber")
    assert tagged.returncode == EXIT_OK and "scored 0, failed 0" in tagged.stderr and "3 unchanged" in tagged.stderr
    assert {name: row["AccessionNumber"] for name, row in rows(out).items()} == {
        "a.jpeg": "",
        "ct.dcm": "ACC-2",
        "frontal.dcm": "ACC-1",
    }


# ---- no poison file


def sparse_dicom(path: Path, side: int, frames: int, first_frame: np.ndarray | None = None) -> Path:
    """Write a frontal DX of FRAMES 16-bit SIDE x SIDE frames as a sparse file.

    Its pixel data is FIRST_FRAME (resized) or nothing, then a hole.
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality, ds.ViewPosition, ds.PhotometricInterpretation = "DX", "PA", "MONOCHROME2"
    ds.Rows = ds.Columns = side
    ds.NumberOfFrames, ds.SamplesPerPixel, ds.PixelRepresentation = frames, 1, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelData = b"\0\0" if first_frame is None else cv2.resize(first_frame, (side, side)).astype("<u2").tobytes()
    ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)
    length = side * side * 2 * frames
    header = b"\xe0\x7f\x10\x00OW\x00\x00"  # (7FE0,0010) OW, then the 32-bit length
    at = path.read_bytes().rindex(header) + len(header)
    with open(path, "r+b") as stream:
        stream.seek(at)
        stream.write(struct.pack("<I", length))
        stream.truncate(at + 4 + length)
    return path


def test_a_dicom_claiming_gigabytes_is_one_error_row_and_a_multi_frame_one_reads_its_first_frame(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    huge = sparse_dicom(folder / "huge.dcm", 4096, 127)  # 4.0 GiB of pixel data
    frames = sparse_dicom(
        folder / "frames.dcm", 1024, 450, grey_scan().astype(np.uint16) * 200
    )  # 900 MiB: under the file-size limit
    assert huge.stat().st_size > 4 * MAX_FILE_BYTES - 100_000_000 and MAX_FILE_BYTES > frames.stat().st_size > 900 << 20
    assert (huge.stat().st_blocks + frames.stat().st_blocks) * 512 < 10_000_000  # sparse: no real disk use
    out = tmp_path / "r.csv"
    with open(tmp_path / "stderr", "w") as stderr:
        process = subprocess.Popen(command("score", folder, "-o", out, "--quiet", model=True), env=ENV, stderr=stderr)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == EXIT_SOME_FAILED, (tmp_path / "stderr").read_text()
    scored = rows(out)
    assert scored["huge.dcm"]["error"] == "file too large (4064 MiB; limit 1024 MiB)"
    assert scored["frames.dcm"]["error"] == "" and scored["frames.dcm"]["probability"]
    assert usage.ru_maxrss * 1024 < 1.5e9, f"peak memory {usage.ru_maxrss >> 10} MiB"


CRASH_AT_POISON = """
import os, signal
import xscan.scoring.pipeline

real_load_scan = xscan.scoring.pipeline.load_scan

def load_scan(path, *args, **kwargs):
    if path.name == "poison.jpeg":
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer, or a native decoder's crash, would end it
    return real_load_scan(path, *args, **kwargs)

xscan.scoring.pipeline.load_scan = load_scan
"""


def test_a_file_in_flight_when_two_runs_died_is_an_error_row_and_not_opened_again(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    copy_scans(folder, ["a.jpeg", "b.jpeg", "poison.jpeg", "y.jpeg", "z.jpeg"])
    out = tmp_path / "r.csv"
    for _ in range(2):
        died = xscan("score", folder, "-o", out, "--workers", "2", "--batch-size", "1", extra=CRASH_AT_POISON)
        assert died.returncode == -signal.SIGKILL, died.stderr
        assert str(folder / "poison.jpeg") in _in_flight(out)  # left in flight in the state file by the kill
    third = xscan(
        "score", folder, "-o", out, "--workers", "2", extra=CRASH_AT_POISON
    )  # would die, were the file opened
    assert third.returncode == EXIT_SOME_FAILED, third.stderr
    errors = {name: row["error"] for name, row in rows(out).items()}
    assert errors == {"a.jpeg": "", "b.jpeg": "", "poison.jpeg": CRASHED_TWICE, "y.jpeg": "", "z.jpeg": ""}
    assert _crashes(out) == [(str(folder / "poison.jpeg"), 2)]  # remembered until the file changes


def _in_flight(out: Path) -> list[str]:
    with closing(sqlite3.connect(state_path(out))) as connection:
        return [key for (key,) in connection.execute("SELECT resolved_path FROM in_flight")]


def _crashes(out: Path) -> list[tuple[str, int]]:
    with closing(sqlite3.connect(state_path(out))) as connection:
        return connection.execute("SELECT resolved_path, count FROM crashes").fetchall()


# ---- two runs, one results file

HOLD_THE_LOCK = """
def hold(weights, **options):
    print("holding the lock", flush=True)
    sys.stdin.read()  # until the test kills this process
    return StandIn()

xscan.scoring.run.load_scorer = hold
"""


def test_a_second_run_on_the_same_results_is_refused_at_once_or_waits_with_wait(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    copy_scans(folder, ["a.jpeg", "b.jpeg"])
    out = tmp_path / "r.csv"
    holder = subprocess.Popen(
        command("score", folder, "-o", out, extra=HOLD_THE_LOCK),
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    waiter = None
    try:
        assert holder.stdout.readline() == "holding the lock\n"
        refused = xscan("score", folder, "-o", out, model=True)
        assert refused.returncode == EXIT_USAGE, refused.stderr
        assert f"its lock {out}.lock is held" in refused.stderr and "--wait" in refused.stderr
        waiter = subprocess.Popen(
            command("score", folder, "-o", out, "--wait"), env=ENV, stderr=subprocess.PIPE, text=True
        )
        assert waiter.stderr.readline() == f"waiting: another xscan score holds {out}.lock; waiting for it to finish\n"
        holder.kill()  # kill -9: the kernel releases the lock
        assert holder.wait() == -signal.SIGKILL
        assert waiter.wait(timeout=120) == EXIT_OK and "scored 2, failed 0" in waiter.stderr.read()
    finally:
        for process in (holder, waiter):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


# ---- spreadsheet-safe CSV, ground truth by path

FORMULAS = ['=HYPERLINK("x","open").jpeg', "+cmd.jpeg", "-2+3.jpeg", "@SUM(A1).jpeg", "\tTAB.jpeg", "'=quoted.jpeg"]


def test_formula_like_names_are_text_to_a_spreadsheet_and_round_trip_through_score_resume_and_report(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "export"
    copy_scans(folder, [*FORMULAS, "plain.jpeg"])
    write_dicom(folder / "=dicom.dcm", grey_scan(), AccessionNumber="=1+1")
    out = tmp_path / "r.csv"
    first = xscan("score", ".", "-o", out, "--dicom-tags", "AccessionNumber", cwd=folder)  # scored from its own folder
    assert first.returncode == EXIT_OK, first.stderr
    with open(out, newline="", encoding="utf-8") as stream:
        raw = list(csv.reader(stream))[1:]
    cells = [cell for record in raw for cell in record]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert {record[0] for record in raw} == {escape_cell(name) for name in [*FORMULAS, "plain.jpeg", "=dicom.dcm"]}
    assert '\'=HYPERLINK("x","open").jpeg' in {record[0] for record in raw} and "''=quoted.jpeg" in {
        record[0] for record in raw
    }
    assert "'=1+1" in cells
    names = set(FORMULAS) | {"plain.jpeg", "=dicom.dcm"}
    assert set(rows(out)) == names and rows(out)["=dicom.dcm"]["AccessionNumber"] == "=1+1"
    again = xscan("score", ".", "-o", out, "--dicom-tags", "AccessionNumber", cwd=folder)
    assert "scored 0, failed 0" in again.stderr and "8 unchanged" in again.stderr and len(read_table(out).records) == 8
    truth = tmp_path / "truth.csv"
    with open(truth, "w", newline="") as stream:
        csv.writer(stream).writerows([["path", "label"], *[[escape_cell(name), "NORMAL"] for name in sorted(names)]])
    report = xscan("report", out, "--labels-file", truth, "--json", "--bootstrap", "0", cwd=folder)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["n"] == 8 and json.loads(report.stdout)["without_ground_truth"] == 0


def test_same_named_files_in_two_folders_keep_their_own_labels_and_a_bare_name_matches_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    copy_scans(folder / "study1", ["IM0001.jpeg"])
    copy_scans(folder / "study2", ["IM0001.jpeg"], "PNEUMONIA")
    copy_scans(folder / "study3", ["IM0001.jpeg"])
    copy_scans(folder / "other", ["x.jpeg"])
    out = tmp_path / "r.csv"
    assert xscan("score", folder, "-o", out).returncode == EXIT_OK
    truth = tmp_path / "truth.csv"
    truth.write_text("path,label\nstudy1/IM0001.jpeg,NORMAL\nstudy2/IM0001.jpeg,PNEUMONIA\nelsewhere/x.jpeg,NORMAL\n")
    report = xscan("report", out, "--labels-file", truth, "--labels-root", folder, "--json", "--bootstrap", "0")
    assert report.returncode == 0, report.stderr
    result = json.loads(report.stdout)
    assert (result["tp"] + result["fn"], result["tn"] + result["fp"], result["without_ground_truth"]) == (1, 1, 2)
    note = next(note for note in result["notes"] if "have no ground truth" in note)
    assert re.search(r"study3/IM0001\.jpeg", note) and "other/x.jpeg" in note
