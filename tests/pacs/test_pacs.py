"""`xscan studies` and `xscan sr` on DICOM copies of real films, checked by independent tools: dciodvfy, dsrdump, Orthanc.

The export: three studies of real films (a pneumonia study of two frontal films and a lateral, a
normal study of two frontal films, a study of one film turned upside down) and one JPEG of
another patient. It is scored once per module with the real model (`xscan score`). Orthanc is
started once per session on free ports with a temporary storage folder. Without dicom3tools,
dcmtk, Orthanc or the pacs extra these tests are skipped, unless XSCAN_REQUIRE_PACS=1 (set by
.ci/run), where a missing one is a failure.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid
from support.data import REPO, TRAIN, require_data

from xscan.about import DISCLAIMER

REQUIRED = os.environ.get("XSCAN_REQUIRE_PACS") == "1"
PNEUMONIA_STUDY, NORMAL_STUDY, TURNED_STUDY = (f"1.2.826.0.1.3680043.10.543.26.{n}" for n in (1, 2, 3))


def need(what: str, present: bool, install: str) -> None:
    if present:
        return
    if REQUIRED:
        pytest.fail(f"{what} is missing and XSCAN_REQUIRE_PACS=1: {install}")
    pytest.skip(f"{what} is not installed ({install})")


def need_tool(tool: str, package: str) -> str:
    need(tool, shutil.which(tool) is not None, f"apt-get install {package}")
    return shutil.which(tool) or tool


def need_extra() -> None:
    try:
        import highdicom  # noqa: F401
        import pynetdicom  # noqa: F401
    except ImportError:
        need("the pacs extra", False, "pip install '.[pacs]'")


def xscan(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xscan.cli", *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def write_film(
    path: Path, film: Path, patient: str, study: str, accession: str, number: int, view: str = "PA", turn: bool = False
) -> Path:
    """A real film as a DX image of STUDY, with the patient and study attributes a PACS export carries."""
    grey = cv2.imread(str(film), cv2.IMREAD_GRAYSCALE)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[study, str(number)])
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid(entropy_srcs=[study, "images"])
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = f"Test^{patient}", patient, "20180101", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "101500", "1", accession
    ds.ReferringPhysicianName = ""
    ds.Modality, ds.ViewPosition, ds.SeriesNumber, ds.InstanceNumber = "DX", view, 1, number
    ds.set_pixel_data(np.ascontiguousarray(np.rot90(grey, 2)) if turn else grey, "MONOCHROME2", 8)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The export folder, scored: its results CSV, and the SOP Instance UID of each DICOM file."""
    require_data()  # copies of real films
    folder = tmp_path_factory.mktemp("pacs") / "export"
    folder.mkdir()
    pneumonia = sorted((TRAIN / "PNEUMONIA").glob("person1_*"))[:2]
    normal = [TRAIN / "NORMAL" / "IM-0115-0001.jpeg", TRAIN / "NORMAL" / "IM-0117-0001.jpeg"]
    write_film(folder / "a1.dcm", pneumonia[0], "P1", PNEUMONIA_STUDY, "ACC1", 1)
    write_film(folder / "a2.dcm", pneumonia[1], "P1", PNEUMONIA_STUDY, "ACC1", 2)
    write_film(
        folder / "a3.dcm", pneumonia[1], "P1", PNEUMONIA_STUDY, "ACC1", 3, view="LL"
    )  # skipped by the DICOM policy
    write_film(folder / "b1.dcm", normal[0], "P2", NORMAL_STUDY, "ACC2", 1)
    write_film(folder / "b2.dcm", normal[1], "P2", NORMAL_STUDY, "ACC2", 2)
    write_film(folder / "c1.dcm", normal[0], "P3", TURNED_STUDY, "ACC3", 1, turn=True)
    shutil.copy(sorted((TRAIN / "PNEUMONIA").glob("person3_*"))[0], folder / "person3_virus_1.jpeg")
    results = folder.parent / "results.csv"
    scored = xscan("score", folder, "-o", results, "--quiet")
    assert scored.returncode == 0, scored.stderr
    return {"folder": folder, "results": results}


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def expected_verdict(files: list[dict[str, str]]) -> tuple[str, str]:
    """The study's probability and label from its files' rows, computed here on its own."""
    scored = [row for row in files if row["probability"]]
    in_scope = [row for row in scored if not row["scope"]]
    if not scored:
        return "", ""
    best = max(in_scope or scored, key=lambda row: float(row["probability"]))
    if not in_scope:
        return best["probability"], "OUT_OF_SCOPE"
    above = float(best["probability"]) >= float(best["threshold"])
    return best["probability"], "PNEUMONIA" if above else "NORMAL"


def test_studies_roll_up_each_study_of_the_export(export: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "studies.csv"
    done = xscan("studies", export["results"], "-o", out)
    assert done.returncode == 0, done.stderr
    assert "4 studies from 7 files" in done.stderr
    results = {Path(row["path"]).name: row for row in rows_of(export["results"])}
    studies = {row["path"]: row for row in rows_of(out)}
    members = {
        PNEUMONIA_STUDY: ["a1.dcm", "a2.dcm", "a3.dcm"],
        NORMAL_STUDY: ["b1.dcm", "b2.dcm"],
        TURNED_STUDY: ["c1.dcm"],
    }
    patient_key = str(export["folder"] / "person3")
    assert list(studies) == [PNEUMONIA_STUDY, NORMAL_STUDY, TURNED_STUDY, patient_key]  # walk order of first files
    members[patient_key] = ["person3_virus_1.jpeg"]
    for key, names in members.items():
        study = studies[key]
        assert (study["probability"], study["label"]) == expected_verdict([results[name] for name in names])
        assert study["files"] == str(len(names))
        assert Path(study["decided_by"]).name in names
    assert studies[PNEUMONIA_STUDY]["skipped"] == "1" and studies[PNEUMONIA_STUDY]["scored"] == "2"
    assert studies[PNEUMONIA_STUDY]["AccessionNumber"] == "ACC1"
    assert (
        studies[PNEUMONIA_STUDY]["grouped_by"] == "StudyInstanceUID" and studies[patient_key]["grouped_by"] == "patient"
    )


def test_per_study_metrics_come_from_xscan_report(export: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "studies.csv"
    assert xscan("studies", export["results"], "-o", out).returncode == 0
    truth = tmp_path / "study-labels.csv"
    truth.write_text(f"path,label\n{PNEUMONIA_STUDY},PNEUMONIA\n{NORMAL_STUDY},NORMAL\n")
    report = xscan("report", out, "--labels-file", truth, "--json", "--bootstrap", "0")
    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)
    assert figures["rows"] == 4 and figures["n"] == 2
    assert (figures["tp"] + figures["fn"], figures["tn"] + figures["fp"]) == (1, 1)  # one study of each class


def test_studies_never_overwrite_the_results(export: dict[str, Path]) -> None:
    before = export["results"].read_bytes()
    done = xscan("studies", export["results"], "-o", export["results"])
    assert done.returncode == 2
    assert "results file itself" in done.stderr
    assert export["results"].read_bytes() == before


@pytest.fixture(scope="module")
def reports(export: dict[str, Path]) -> Path:
    need_extra()
    folder = export["folder"].parent / "sr"
    done = xscan("sr", export["results"], "-o", folder)
    assert done.returncode == 0, done.stderr
    assert "3 reports" in done.stderr and "no report for 1 non-DICOM files" in done.stderr
    return folder


def sr_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"))


def test_every_report_passes_dciodvfy_and_dsrdump(reports: Path) -> None:
    dciodvfy, dsrdump = need_tool("dciodvfy", "dicom3tools"), need_tool("dsrdump", "dcmtk")
    for path in sr_files(reports):
        checked = subprocess.run([dciodvfy, path], capture_output=True, text=True, timeout=60)
        assert "Error" not in checked.stdout + checked.stderr, checked.stdout + checked.stderr
        assert "Comprehensive3DSR" in checked.stdout + checked.stderr
        dumped = subprocess.run([dsrdump, path], capture_output=True, text=True, timeout=60)
        assert dumped.returncode == 0, dumped.stderr
        assert "Verification Flag   : UNVERIFIED" in dumped.stdout and '"Pneumonia"' in dumped.stdout


def image_groups(report: Dataset) -> dict[str, float]:
    """The probability of each image the report refers to, by SOP Instance UID, read back with plain pydicom."""
    found = {}
    for group in report.ContentSequence[-2].ContentSequence:  # Imaging Measurements, then Qualitative Evaluations
        items = group.ContentSequence
        images = [item for item in items if item.ValueType == "IMAGE"]
        numbers = [item for item in items if item.ValueType == "NUM"]
        if images:
            uid = images[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            found[uid] = float(numbers[0].MeasuredValueSequence[0].NumericValue)
    return found


def test_reports_carry_the_csv_probabilities_in_the_source_study(export: dict[str, Path], reports: Path) -> None:
    results = rows_of(export["results"])
    by_uid = {
        pydicom.dcmread(row["path"], stop_before_pixels=True).SOPInstanceUID: row
        for row in results
        if row["path"].endswith(".dcm") and row["probability"]
    }
    seen = {}
    for path in sr_files(reports):
        report = pydicom.dcmread(path)
        assert report.VerificationFlag == "UNVERIFIED"
        assert report.StudyInstanceUID == path.stem and report.Modality == "SR"
        assert report.PatientID in {"P1", "P2", "P3"} and report.AccessionNumber.startswith("ACC")
        seen.update(image_groups(report))
        texts = {element.value for element in report.iterall() if element.keyword == "TextValue"}
        assert {DISCLAIMER, "xscan", f"model {results[0]['model']}", f"threshold {results[0]['threshold']}"} <= texts
    turned = pydicom.dcmread(reports / f"{TURNED_STUDY}.dcm")  # a film upside down: not assessed, with the reason
    assert "373068000" in {element.value for element in turned.iterall() if element.keyword == "CodeValue"}
    assert any(
        element.value.startswith("not assessed: out of scope, rotated or inverted")
        for element in turned.iterall()
        if element.keyword == "TextValue"
    )
    assert seen.keys() == by_uid.keys()
    for uid, probability in seen.items():
        assert probability == pytest.approx(float(by_uid[uid]["probability"]), abs=1e-6)


def test_a_rerun_writes_the_same_reports(export: dict[str, Path], reports: Path) -> None:
    before = {path.name: pydicom.dcmread(path).SOPInstanceUID for path in sr_files(reports)}
    done = xscan("sr", export["results"], "-o", reports)
    assert done.returncode == 0 and "(0 new or changed)" in done.stderr
    assert {path.name: pydicom.dcmread(path).SOPInstanceUID for path in sr_files(reports)} == before


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Orthanc:
    def __init__(self, folder: Path) -> None:
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
            "Plugins": [],
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = open(folder / "orthanc.log", "w")
        self.process = subprocess.Popen(
            [shutil.which("Orthanc") or "Orthanc", str(folder / "orthanc.json")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> object:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=10) as answer:
            return json.loads(answer.read())

    def raw(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=10) as answer:
            return answer.read()

    def post(self, path: str, body: bytes) -> object:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

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


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory):
    need_tool("Orthanc", "orthanc")
    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_send_stores_each_report_in_its_study_once(
    export: dict[str, Path], reports: Path, orthanc: Orthanc, tmp_path: Path
) -> None:
    dciodvfy = need_tool("dciodvfy", "dicom3tools")
    for path in sorted(export["folder"].glob("*.dcm")):
        orthanc.post("/instances", path.read_bytes())  # the images, as the PACS holds them before xscan reports
    node = f"ORTHANC@127.0.0.1:{orthanc.dicom}"
    sent = xscan("sr", export["results"], "-o", reports, "--send", node)
    assert sent.returncode == 0, sent.stderr
    assert f"stored 3 on {node}" in sent.stderr
    for path in sr_files(reports):
        found = orthanc.post(
            "/tools/find", json.dumps({"Level": "Study", "Query": {"StudyInstanceUID": path.stem}}).encode()
        )
        assert len(found) == 1
        series = orthanc.get(f"/studies/{found[0]}/series")
        modalities = sorted(s["MainDicomTags"]["Modality"] for s in series)
        assert modalities == ["DX", "SR"]
        sr_series = next(s for s in series if s["MainDicomTags"]["Modality"] == "SR")
        held = tmp_path / f"held-{path.name}"
        held.write_bytes(orthanc.raw(f"/instances/{sr_series['Instances'][0]}/file"))
        checked = subprocess.run([dciodvfy, held], capture_output=True, text=True, timeout=60)
        assert "Error" not in checked.stdout + checked.stderr, checked.stdout + checked.stderr
    count = orthanc.get("/statistics")["CountInstances"]
    again = xscan("sr", export["results"], "-o", reports, "--send", node)
    assert again.returncode == 0, again.stderr
    assert f"stored 0 on {node}; 3 were stored there before" in again.stderr
    assert orthanc.get("/statistics")["CountInstances"] == count


def test_a_refused_association_exits_3_and_keeps_the_reports(export: dict[str, Path], reports: Path) -> None:
    node = f"ORTHANC@127.0.0.1:{free_port()}"  # nobody listens there
    done = xscan("sr", export["results"], "-o", reports, "--send", node)
    assert done.returncode == 3
    assert f"{node} refused the association or did not answer" in done.stderr and "Traceback" not in done.stderr
    assert len(sr_files(reports)) == 3
    sent_log = reports / "sent.csv"
    assert not sent_log.exists() or node not in sent_log.read_text()


def test_a_rejected_report_exits_3_stays_unlogged_and_is_sent_by_the_next_run(
    export: dict[str, Path], reports: Path, tmp_path: Path
) -> None:
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import Comprehensive3DSRStorage

    folder = tmp_path / "sr"
    shutil.copytree(reports, folder, ignore=shutil.ignore_patterns("sent.csv"))
    stored: list[str] = []
    statuses = iter([0xA700, 0x0000, 0x0000])  # the first report: "out of resources"; the rest stored

    def on_store(event: evt.Event) -> int:
        status = next(statuses, 0x0000)
        if status == 0x0000:
            stored.append(event.request.AffectedSOPInstanceUID)
        return status

    scp = AE(ae_title="STORESCP")
    scp.add_supported_context(Comprehensive3DSRStorage)
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        node = f"STORESCP@127.0.0.1:{port}"
        first = xscan("sr", export["results"], "-o", folder, "--send", node)
        assert first.returncode == 3
        assert f"{node} rejected 1 of 3 reports" in first.stderr and "status 0xA700" in first.stderr
        assert len(stored) == 2
        second = xscan("sr", export["results"], "-o", folder, "--send", node)
        assert second.returncode == 0, second.stderr
        assert f"stored 1 on {node}; 2 were stored there before" in second.stderr
        assert len(set(stored)) == 3
    finally:
        server.shutdown()


def test_a_node_that_is_not_aet_at_host_port_is_a_usage_error(export: dict[str, Path], tmp_path: Path) -> None:
    need_extra()
    done = xscan("sr", export["results"], "-o", tmp_path / "sr", "--send", "pacs.example.org:4242")
    assert done.returncode == 2
    assert "AET@HOST:PORT" in done.stderr


def test_without_the_pacs_extra_sr_says_what_to_install(export: dict[str, Path], tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "highdicom"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named highdicom (a test stand-in)')\n")
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(fake.parent), str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = xscan("sr", export["results"], "-o", tmp_path / "sr", env=env)
    assert done.returncode == 2
    assert "pip install 'xscan[pacs]'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "sr").exists()
