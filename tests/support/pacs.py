"""PACS helpers the listener's tests share: the tools they need, DICOM copies of real films, Orthanc, `xscan listen`.

Without dcmtk, Orthanc or the pacs extra these tests skip, unless XSCAN_REQUIRE_PACS=1 (set by
.ci/run), where a missing one is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

from support.processes import ENV

REQUIRED = os.environ.get("XSCAN_REQUIRE_PACS") == "1"
# Debian's dcmtk; the virtual environment may hold pynetdicom's own `storescu` earlier on PATH.
DCMTK = Path("/usr/bin")
WEB_VIEWER = Path("/usr/share/orthanc/plugins/libOrthancWebViewer.so")


def need(what: str, present: bool, install: str) -> None:
    if present:
        return
    if REQUIRED:
        pytest.fail(f"{what} is missing and XSCAN_REQUIRE_PACS=1: {install}")
    pytest.skip(f"{what} is not installed ({install})")


def need_tool(tool: str, package: str) -> str:
    need(tool, shutil.which(tool) is not None, f"apt-get install {package}")
    return shutil.which(tool) or tool


def dcmtk(tool: str) -> str:
    """Give the path of dcmtk's TOOL (echoscu, storescu), never a namesake earlier on PATH."""
    path = DCMTK / tool
    need(f"dcmtk's {tool}", path.exists(), "apt-get install dcmtk")
    return str(path)


def need_extra() -> None:
    try:
        import highdicom  # noqa: F401
        import pynetdicom  # noqa: F401
    except ImportError:
        need("the pacs extra", False, "pip install '.[pacs]'")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def film_dataset(
    grey: np.ndarray,
    patient: str,
    study: str,
    number: int,
    view: str = "PA",
    modality: str = "DX",
    accession: str | None = None,
) -> Dataset:
    """GREY (8-bit pixels) as image NUMBER of STUDY, with the patient and study attributes a PACS export carries.

    Args:
        grey: The film's pixels, one 8-bit channel.
        patient: The Patient ID (the name is Test^PATIENT).
        study: The Study Instance UID; the series and instance UIDs derive from it and NUMBER.
        number: The Instance Number.
        view: The View Position.
        modality: The Modality (DX by default).
        accession: The Accession Number (ACC-PATIENT when None).

    Returns:
        The dataset with its file meta information, ready for `save_as` or C-STORE.
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[study, str(number)])
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid(entropy_srcs=[study, "images"])
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = f"Test^{patient}", patient, "20180101", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20240102", "101500", "1"
    ds.AccessionNumber = f"ACC-{patient}" if accession is None else accession
    ds.ReferringPhysicianName = ""
    ds.Modality, ds.ViewPosition, ds.SeriesNumber, ds.InstanceNumber = modality, view, 1, number
    ds.set_pixel_data(grey, "MONOCHROME2", 8)
    return ds


def write_film(
    path: Path, film: Path, patient: str, study: str, number: int, *, turn: bool = False, **tags: str
) -> Path:
    """A real film as an image of STUDY (DX by default), with the patient and study attributes a PACS export carries.

    The film is turned upside down when TURN; TAGS (view, modality, accession) and the others are `film_dataset`'s.
    """
    grey = cv2.imread(str(film), cv2.IMREAD_GRAYSCALE)
    if turn:
        grey = np.ascontiguousarray(np.rot90(grey, 2))
    film_dataset(grey, patient, study, number, **tags).save_as(path, enforce_file_format=True)
    return path


class Orthanc:
    """An Orthanc on free ports with a temporary storage folder, and its REST API."""

    def __init__(self, folder: Path, web_viewer: bool = False) -> None:
        self.http, self.dicom = free_port(), free_port()
        config = {
            "Name": "xscan-test",
            "StorageDirectory": str(folder / "db"),
            "IndexDirectory": str(folder / "db"),
            "HttpPort": self.http,
            "DicomPort": self.dicom,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            # Debian's orthanc-webviewer when WEB_VIEWER and installed (the heatmap images in a viewer).
            "Plugins": [str(WEB_VIEWER)] if web_viewer and WEB_VIEWER.is_file() else [],
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = open(folder / "orthanc.log", "w")
        self.process = subprocess.Popen(
            [shutil.which("Orthanc") or "Orthanc", str(folder / "orthanc.json")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def _call(self, path: str, body: bytes | None = None, method: str | None = None) -> bytes:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", data=body, method=method)
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.read()

    def get(self, path: str) -> object:
        return json.loads(self._call(path))

    def raw(self, path: str) -> bytes:
        return self._call(path)

    def post(self, path: str, body: bytes) -> object:
        return json.loads(self._call(path, body, "POST") or b"null")

    def put(self, path: str, value: object) -> None:
        self._call(path, json.dumps(value).encode(), "PUT")

    def wait_ready(self, tries: int = 150) -> None:
        """Ask /system until it answers: each failed try waits 0.2 s on Orthanc's process, which also sees it die."""
        for _ in range(tries):
            try:
                self.get("/system")
                return
            except (urllib.error.URLError, ConnectionError):
                try:
                    code = self.process.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    continue
                pytest.fail(f"Orthanc exited with {code}: see {self.log.name}")
        pytest.fail(f"Orthanc did not answer in {tries} tries")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


class ListenerProcess:
    """`xscan listen` in its own process, on a free port, logging to a file the test reads."""

    def __init__(self, store: Path, *options: str, port: int | None = None, quiet_period: float = 1.0) -> None:
        self.store = store
        self.port = port or free_port()
        self.log = store.parent / f"{store.name}-listen.log"
        self.stderr = open(store.parent / f"{store.name}-stderr.txt", "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "xscan.cli", "listen", "--store", str(store), "--port", str(self.port)]
            + ["--quiet-period", str(quiet_period), "--log-file", str(self.log), *options],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            env=ENV,
        )
        self.wait_for(rf"listening on port {self.port}\b")

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 120) -> list[str]:
        """The log lines matching PATTERN once there are COUNT; fails if the listener exits or TIMEOUT passes first."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.text().splitlines() if re.search(pattern, line)]
            if len(found) >= count:
                return found
            if self.process.poll() is not None:
                pytest.fail(f"xscan listen exited with {self.process.returncode} before {pattern!r}:\n{self.text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {count} log lines {pattern!r} in {timeout} s:\n{self.text()}")
            time.sleep(0.1)  # the log file is appended line by line: read it again

    def terminate(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.stderr.close()
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)
        self.stderr.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        elif not self.stderr.closed:
            self.stderr.close()


def status(store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xscan.cli", "listen", "--store", str(store), "--status"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )


def store_files(
    ae_title: str, port: int, datasets: list[Dataset], on_status=None, timeout: float = 30
) -> list[int | None]:
    """C-STORE DATASETS on 127.0.0.1:PORT in one association, calling as AE_TITLE: each status (None: no answer)."""
    from pynetdicom import AE

    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class in {str(ds.SOPClassUID) for ds in datasets}:
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian])
    association = ae.associate("127.0.0.1", port, ae_title="XSCAN")
    assert association.is_established
    statuses = []
    try:
        for ds in datasets:
            if not association.is_established:
                break
            answer = association.send_c_store(ds)
            code = getattr(answer, "Status", None)
            statuses.append(code)
            if on_status is not None:
                on_status(ds, code)
    finally:
        if association.is_established:
            association.release()
    return statuses


@contextmanager
def running_orthanc(folder: Path, web_viewer: bool = False) -> Iterator[Orthanc]:
    """An Orthanc in FOLDER that answers, stopped on leaving; skips (or fails) without Orthanc.

    Args:
        folder: A temporary folder for its configuration, storage and log.
        web_viewer: Load Debian's web viewer plugin when it is installed.

    Yields:
        The running Orthanc.
    """
    need_tool("Orthanc", "orthanc")
    server = Orthanc(folder, web_viewer)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
