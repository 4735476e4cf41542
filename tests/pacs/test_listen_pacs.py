"""`xscan listen` with a real PACS: Orthanc pushes studies to it and receives their reports back; kill -9 mid-transfer.

One Orthanc for the module (free ports, a temporary storage folder) is both the PACS that pushes
studies (REST `/modalities/xscan/store`) and the destination of the reports (`--send`). The films
are DICOM copies of real films of the data set; quiet periods are 1 to 2 s.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from support.data import TRAIN, require_data
from support.pacs import ListenerProcess, Orthanc, need_extra, running_orthanc, status, store_files, write_film

pytestmark = [pytest.mark.slow, pytest.mark.real_component]

PUSHED = "1.2.826.0.1.3680043.10.543.31.20"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory):
    need_extra()
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


def study_id(orthanc: Orthanc, study_uid: str) -> str:
    found = orthanc.post(
        "/tools/find", json.dumps({"Level": "Study", "Query": {"StudyInstanceUID": study_uid}}).encode()
    )
    assert len(found) == 1, found
    return found[0]


def reports_held(orthanc: Orthanc, study_uid: str) -> list[Dataset]:
    """The SR instances Orthanc holds in the study, read back with pydicom."""
    held = []
    for series in orthanc.get(f"/studies/{study_id(orthanc, study_uid)}/series"):
        if series["MainDicomTags"]["Modality"] == "SR":
            for instance in series["Instances"]:
                held.append(pydicom.dcmread(__import__("io").BytesIO(orthanc.raw(f"/instances/{instance}/file"))))
    return held


def referenced_images(report: Dataset) -> set[str]:
    return {element.value for element in report.iterall() if element.keyword == "ReferencedSOPInstanceUID"}


@pytest.fixture(scope="module")
def pushed(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Orthanc pushes a study of two films to the listener, then, once its report is back, a late third film."""
    require_data()
    folder = tmp_path_factory.mktemp("pushed")
    sources = sorted((TRAIN / "PNEUMONIA").glob("person3*"))[:3]
    films = [write_film(folder / f"f{n}.dcm", source, "P20", PUSHED, n) for n, source in enumerate(sources, 1)]
    ids = [orthanc.post("/instances", film.read_bytes())["ID"] for film in films]
    listener = ListenerProcess(
        folder / "store", "--allow", "ORTHANC@127.0.0.1", "--send", f"ORTHANC@127.0.0.1:{orthanc.dicom}"
    )
    try:
        orthanc.put("/modalities/xscan", {"AET": "XSCAN", "Host": "127.0.0.1", "Port": listener.port})
        orthanc.post("/modalities/xscan/store", json.dumps(ids[:2]).encode())
        listener.wait_for(r"\(ORTHANC\): 2 instances stored; released")
        listener.wait_for(rf"study {PUSHED}: 2 instances, \w+ \(\d\.\d+\); queued for ORTHANC@")
        listener.wait_for(rf"study {PUSHED}: 3 report files stored on ORTHANC@")  # the report, 2 heatmap images
        (first,) = reports_held(orthanc, PUSHED)
        orthanc.post("/modalities/xscan/store", json.dumps(ids[2:]).encode())
        listener.wait_for(rf"study {PUSHED}: 3 instances, \w+ \(\d\.\d+\); queued for ORTHANC@")
        # The amended report and the late film's heatmap image; the first two images are unchanged, not sent again.
        listener.wait_for(rf"study {PUSHED}: 2 report files stored on ORTHANC@")
        counted = status(listener.store)
        held = reports_held(orthanc, PUSHED)
    finally:
        listener.close()
    uids = [str(pydicom.dcmread(film).SOPInstanceUID) for film in films]
    return {"first": first, "held": held, "images": uids, "status": counted.stdout}


def test_orthanc_pushes_a_study_and_gets_its_report_back_in_the_same_study(pushed: dict[str, object]) -> None:
    first: Dataset = pushed["first"]
    assert first.StudyInstanceUID == PUSHED and first.Modality == "SR" and first.PatientID == "P20"
    assert referenced_images(first) >= set(pushed["images"][:2])
    assert pushed["images"][2] not in referenced_images(first)


def test_a_late_instance_reopens_its_study_and_its_report_is_made_again(pushed: dict[str, object]) -> None:
    first: Dataset = pushed["first"]
    later = [report for report in pushed["held"] if report.SOPInstanceUID != first.SOPInstanceUID]
    assert len(later) == 1  # one new report: nothing sent twice
    assert referenced_images(later[0]) >= set(pushed["images"])
    assert "received: 3 instances" in pushed["status"] and "sent: 5 report files" in pushed["status"]


def test_the_remade_report_amends_the_first(pushed: dict[str, object]) -> None:
    first: Dataset = pushed["first"]
    (later,) = [report for report in pushed["held"] if report.SOPInstanceUID != first.SOPInstanceUID]
    predecessors = {
        item.ReferencedSOPInstanceUID
        for study in later.get("PredecessorDocumentsSequence", [])
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert predecessors == {first.SOPInstanceUID}
    assert later.InstanceNumber > first.InstanceNumber


FILMS_PER_STUDY = 30  # the issue says 100; benchmarks/listen.py sends 3 x 100, the suite must stay short
KILLED_STUDIES = [f"1.2.826.0.1.3680043.10.543.31.3{n}" for n in range(3)]


def test_kill_9_while_three_associations_send_loses_nothing_acknowledged(orthanc: Orthanc, tmp_path: Path) -> None:
    """3 x 30 films in three associations at once; kill -9 a third of the way; restart; the senders resend the rest."""
    from xscan.pacs.studies import file_of
    from xscan.scoring.results import read_rows

    require_data()
    sources = sorted((TRAIN / "NORMAL").iterdir())[:20]
    studies = {
        uid: [
            pydicom.dcmread(write_film(tmp_path / f"{s}-{n}.dcm", sources[n % len(sources)], f"K{s}", uid, n + 1))
            for n in range(FILMS_PER_STUDY)
        ]
        for s, uid in enumerate(KILLED_STUDIES)
    }
    acknowledged: set[str] = set()
    progress = threading.Condition()

    def on_status(ds: Dataset, code: int | None) -> None:
        if code == 0x0000:
            with progress:
                acknowledged.add(str(ds.SOPInstanceUID))
                progress.notify_all()

    destination = f"ORTHANC@127.0.0.1:{orthanc.dicom}"
    store = tmp_path / "store"
    first = ListenerProcess(store, "--send", destination, quiet_period=2)
    senders = [
        threading.Thread(target=_send_quietly, args=(first.port, films, on_status)) for films in studies.values()
    ]
    for sender in senders:
        sender.start()
    with progress:
        assert progress.wait_for(lambda: len(acknowledged) >= FILMS_PER_STUDY // 2, timeout=120)
    first.kill()
    for sender in senders:
        sender.join(timeout=120)
    assert FILMS_PER_STUDY // 2 <= len(acknowledged) < 3 * FILMS_PER_STUDY  # killed mid-transfer
    on_disk = {path.stem for path in (store / "instances").rglob("*.dcm")}
    assert acknowledged <= on_disk  # durable before the success status went back

    second = ListenerProcess(store, "--send", destination, quiet_period=2)
    try:
        for films in studies.values():
            rest = [ds for ds in films if str(ds.SOPInstanceUID) not in acknowledged]
            assert set(store_files("STORESCU", second.port, rest)) <= {0x0000}
        for uid in KILLED_STUDIES:
            second.wait_for(rf"study {uid}: {FILMS_PER_STUDY} instances, ", timeout=180)
            reports = len(second.wait_for(rf"study {uid}: \d+ instances, "))  # a part may have been reported first
            second.wait_for(rf"study {uid}: \d+ report files stored on {destination}", count=reports, timeout=180)
    finally:
        second.close()
    rows = list(read_rows(store / "results.csv"))
    scored = [file_of(row).stem for row in rows]
    assert len(scored) == len(set(scored)) == 3 * FILMS_PER_STUDY  # every instance exactly once
    assert acknowledged <= set(scored)
    for uid in KILLED_STUDIES:
        # A study that fell quiet after the restart, before its rest came, was reported then and again when complete.
        covered = [
            referenced_images(report) & {str(ds.SOPInstanceUID) for ds in studies[uid]}
            for report in reports_held(orthanc, uid)
        ]
        assert max(map(len, covered)) == FILMS_PER_STUDY


def _send_quietly(port: int, films: list[Dataset], on_status) -> None:
    """Send FILMS until the listener dies under the association (then the association is simply gone)."""
    try:
        store_files("STORESCU", port, films, on_status, timeout=5)  # pynetdicom waits this long on a dead peer
    except (AssertionError, OSError, RuntimeError):
        pass
