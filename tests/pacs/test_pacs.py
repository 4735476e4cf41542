"""`xscan studies` and `xscan sr` on DICOM copies of real films, checked by dciodvfy, dsrdump, Orthanc, Chromium.

The reports and the heatmap images (Secondary Captures) are checked as written and as Orthanc
stores them; the images as Orthanc renders them for a viewer (/instances/ID/preview).

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
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from support.browser import CHROMIUM, need_browser
from support.browser import REQUIRED as BROWSER_REQUIRED
from support.data import REPO, TRAIN, require_data
from support.pacs import WEB_VIEWER, Orthanc, free_port, need_extra, need_tool, running_orthanc, write_film

from xscan.about import DISCLAIMER

pytestmark = [pytest.mark.slow, pytest.mark.real_component]  # real model subprocesses; Orthanc, dcmtk, dicom3tools

PNEUMONIA_STUDY, NORMAL_STUDY, TURNED_STUDY = (f"1.2.826.0.1.3680043.10.543.26.{n}" for n in (1, 2, 3))


STATE = Path(tempfile.mkdtemp(prefix="xscan-state-"))  # this session's install: its device UID, never the user's


def xscan(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xscan.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "XSCAN_STATE_DIR": str(STATE), **(env or {})},
        timeout=300,
    )


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The export folder, scored: its results CSV, and the SOP Instance UID of each DICOM file."""
    require_data()  # copies of real films
    folder = tmp_path_factory.mktemp("pacs") / "export"
    folder.mkdir()
    pneumonia = sorted((TRAIN / "PNEUMONIA").glob("person1_*"))[:2]
    normal = [TRAIN / "NORMAL" / "IM-0115-0001.jpeg", TRAIN / "NORMAL" / "IM-0117-0001.jpeg"]
    write_film(folder / "a1.dcm", pneumonia[0], "P1", PNEUMONIA_STUDY, 1, accession="ACC1")
    write_film(folder / "a2.dcm", pneumonia[1], "P1", PNEUMONIA_STUDY, 2, accession="ACC1")
    # a lateral film: skipped by the DICOM policy
    write_film(folder / "a3.dcm", pneumonia[1], "P1", PNEUMONIA_STUDY, 3, view="LL", accession="ACC1")
    write_film(folder / "b1.dcm", normal[0], "P2", NORMAL_STUDY, 1, accession="ACC2")
    write_film(folder / "b2.dcm", normal[1], "P2", NORMAL_STUDY, 2, accession="ACC2")
    write_film(folder / "c1.dcm", normal[0], "P3", TURNED_STUDY, 1, accession="ACC3", turn=True)
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
    assert "5 heatmap images" in done.stderr  # a1, a2, b1, b2 and the turned c1; not the lateral a3
    return folder


def heatmap_files(folder: Path) -> list[Path]:
    return sorted((folder / "heatmaps").glob("*.dcm"))


def sr_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"))


def check_iod(path: Path, iod: str) -> None:
    """PATH passes dciodvfy with no error, checked as the information object IOD."""
    checked = subprocess.run([need_tool("dciodvfy", "dicom3tools"), path], capture_output=True, text=True, timeout=60)
    said = checked.stdout + checked.stderr
    assert "Error" not in said, said
    assert iod in said


def check_report(path: Path) -> str:
    """PATH passes dciodvfy with no error and dsrdump reads it: its dsrdump text."""
    check_iod(path, "Comprehensive3DSR")
    dumped = subprocess.run([need_tool("dsrdump", "dcmtk"), path], capture_output=True, text=True, timeout=60)
    assert dumped.returncode == 0, dumped.stderr
    assert "Verification Flag   : UNVERIFIED" in dumped.stdout and '"Pneumonia"' in dumped.stdout
    return dumped.stdout


def check_image(path: Path) -> None:
    """PATH, a heatmap image, passes dciodvfy as a Secondary Capture with no error, and dcmdump reads it."""
    check_iod(path, "SCImage")
    dumped = subprocess.run([need_tool("dcmdump", "dcmtk"), path], capture_output=True, text=True, timeout=60)
    assert dumped.returncode == 0 and "xscan heatmaps (unverified)" in dumped.stdout, dumped.stderr


def test_every_report_passes_dciodvfy_and_dsrdump(reports: Path) -> None:
    texts = [check_report(path) for path in sr_files(reports)]
    assert all('"Image Library"' in text for text in texts)  # TID 1600: where viewers place the references


def content_items(dataset: Dataset) -> list[Dataset]:
    """Every content item of an SR, depth first."""
    items = []
    for item in dataset.get("ContentSequence", []):
        items += [item, *content_items(item)]
    return items


def image_groups(report: Dataset) -> dict[str, float | None]:
    """The probability of each image the report refers to by SOP Instance UID (None: none written), read by pydicom."""
    found: dict[str, float | None] = {}
    for group in report.ContentSequence[-2].ContentSequence:  # Imaging Measurements, then Qualitative Evaluations
        items = group.ContentSequence
        images = [item for item in items if item.ValueType == "IMAGE"]
        numbers = [item for item in items if item.ValueType == "NUM"]
        if images:
            uid = images[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            found[uid] = float(numbers[0].MeasuredValueSequence[0].NumericValue) if numbers else None
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
    turned_texts = [element.value for element in turned.iterall() if element.keyword == "TextValue"]
    assert any(text.startswith("not assessed: out of scope, rotated or inverted") for text in turned_texts)
    assert any(text.startswith("Study verdict: out of scope") for text in turned_texts)
    assert not any("OUT_OF_SCOPE" in text for text in turned_texts)
    names = {item.ConceptNameCodeSequence[0].CodeMeaning for item in content_items(turned) if item.ValueType == "NUM"}
    assert names == {"Pixel Data Rows", "Pixel Data Columns"}  # the Image Library's; no probability out of scope
    assert seen.keys() == by_uid.keys()
    for uid, probability in seen.items():
        if by_uid[uid]["scope"]:
            assert probability is None
        else:
            assert probability == pytest.approx(float(by_uid[uid]["probability"]), abs=1e-6)
    report = pydicom.dcmread(sr_files(reports)[0])
    assert list(report.SoftwareVersions) == ["xscan 0.1.0", results[0]["model"]]
    device = next(item for item in content_items(report) if item.ConceptNameCodeSequence[0].CodeValue == "121012")
    assert device.UID == (STATE / "device-uid").read_text().strip()  # this install's, kept in its state folder


def test_a_rerun_writes_the_same_reports(export: dict[str, Path], reports: Path) -> None:
    before = {path.name: pydicom.dcmread(path).SOPInstanceUID for path in sr_files(reports)}
    done = xscan("sr", export["results"], "-o", reports)
    assert done.returncode == 0 and "(0 new or changed)" in done.stderr
    assert {path.name: pydicom.dcmread(path).SOPInstanceUID for path in sr_files(reports)} == before


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory):
    with running_orthanc(tmp_path_factory.mktemp("orthanc"), web_viewer=True) as server:
        yield server


def test_send_stores_each_report_and_image_in_its_study_once(
    export: dict[str, Path], reports: Path, orthanc: Orthanc, tmp_path: Path
) -> None:
    for path in sorted(export["folder"].glob("*.dcm")):
        orthanc.post("/instances", path.read_bytes())  # the images, as the PACS holds them before xscan reports
    node = f"ORTHANC@127.0.0.1:{orthanc.dicom}"
    sent = xscan("sr", export["results"], "-o", reports, "--send", node)
    assert sent.returncode == 0, sent.stderr
    assert f"stored 8 on {node}" in sent.stderr  # 3 reports and 5 heatmap images
    for path in sr_files(reports):
        found = orthanc.post(
            "/tools/find", json.dumps({"Level": "Study", "Query": {"StudyInstanceUID": path.stem}}).encode()
        )
        assert len(found) == 1
        series = orthanc.get(f"/studies/{found[0]}/series")
        by_modality = {s["MainDicomTags"]["Modality"]: s for s in series}
        assert sorted(by_modality) == ["DX", "OT", "SR"]
        assert by_modality["OT"]["MainDicomTags"]["SeriesDescription"] == "xscan heatmaps (unverified)"
        held = tmp_path / f"held-{path.name}"
        held.write_bytes(orthanc.raw(f"/instances/{by_modality['SR']['Instances'][0]}/file"))
        check_report(held)
        for number, instance in enumerate(by_modality["OT"]["Instances"]):
            copy = tmp_path / f"held-{path.stem}-{number}.dcm"
            copy.write_bytes(orthanc.raw(f"/instances/{instance}/file"))
            check_image(copy)
    count = orthanc.get("/statistics")["CountInstances"]
    again = xscan("sr", export["results"], "-o", reports, "--send", node)
    assert again.returncode == 0, again.stderr
    assert f"stored 0 on {node}; 8 were stored there before" in again.stderr
    assert orthanc.get("/statistics")["CountInstances"] == count


def test_every_heatmap_image_passes_dciodvfy_and_refers_to_its_film(export: dict[str, Path], reports: Path) -> None:
    films = {
        str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID): path
        for path in export["folder"].glob("*.dcm")
    }
    for path in heatmap_files(reports):
        check_image(path)
        image = pydicom.dcmread(path)
        film = pydicom.dcmread(films[path.stem], stop_before_pixels=True)
        assert image.SourceImageSequence[0].ReferencedSOPInstanceUID == film.SOPInstanceUID
        assert (image.StudyInstanceUID, image.PatientID, image.AccessionNumber) == (
            film.StudyInstanceUID,
            film.PatientID,
            film.AccessionNumber,
        )
        assert (image.BurnedInAnnotation, image.ConversionType, image.PhotometricInterpretation) == (
            "YES",
            "WSD",
            "RGB",
        )
        assert max(image.Rows, image.Columns) <= 2048 and image.SeriesNumber == 9902


def preview(orthanc: Orthanc, sop_instance_uid: str) -> np.ndarray:
    """Orthanc's own rendering of the stored instance (/instances/ID/preview), as an RGB array."""
    found = orthanc.post(
        "/tools/find", json.dumps({"Level": "Instance", "Query": {"SOPInstanceUID": sop_instance_uid}}).encode()
    )
    assert len(found) == 1
    png = np.frombuffer(orthanc.raw(f"/instances/{found[0]}/preview"), np.uint8)
    return cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def colourfulness(pixels: np.ndarray) -> np.ndarray:
    return pixels.max(axis=-1).astype(int) - pixels.min(axis=-1)


def test_orthancs_preview_shows_the_heatmap_over_the_lungs_and_the_banner(
    export: dict[str, Path], reports: Path, orthanc: Orthanc
) -> None:
    """Sent by the test above; read back as Orthanc renders it for a viewer."""
    from xscan.explain.cam import Explainer
    from xscan.input.decode import decode
    from xscan.input.preprocess import preprocess
    from xscan.model.scorer import load_scorer
    from xscan.pacs.images import BANNER_BACKGROUND

    node = f"ORTHANC@127.0.0.1:{orthanc.dicom}"
    assert xscan("sr", export["results"], "-o", reports, "--send", node).returncode == 0
    film_uid = str(pydicom.dcmread(export["folder"] / "a1.dcm", stop_before_pixels=True).SOPInstanceUID)
    shown = preview(orthanc, str(pydicom.dcmread(reports / "heatmaps" / f"{film_uid}.dcm").SOPInstanceUID))
    grey = decode(export["folder"] / "a1.dcm")
    explainer = Explainer(load_scorer())
    _, cams = explainer.cells(preprocess(grey, 160)[np.newaxis])
    width = shown.shape[1]
    height = round(grey.shape[0] * width / grey.shape[1])  # the film's part, above the banner
    heat = explainer.heat(cams[0], width, height)
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    assert 0.1 * width < x < 0.9 * width and 0.15 * height < y < 0.85 * height  # the hottest cell is on the chest
    hot = colourfulness(shown[:height][heat > 0.8 * heat.max()])
    assert np.median(hot) > 60  # coloured where the map is hot
    band = shown[height + 4 :]
    assert band.shape[0] > 20
    assert np.mean(np.all(np.abs(band.astype(int) - BANNER_BACKGROUND) < 12, axis=-1)) > 0.6  # the dark band
    amber = (band[..., 0] > 180) & (band[..., 1] > 120) & (band[..., 2] < 90)
    assert amber.sum() > 50  # the UNVERIFIED line
    turned_uid = str(pydicom.dcmread(export["folder"] / "c1.dcm", stop_before_pixels=True).SOPInstanceUID)
    out_of_scope = preview(orthanc, str(pydicom.dcmread(reports / "heatmaps" / f"{turned_uid}.dcm").SOPInstanceUID))
    assert np.percentile(colourfulness(out_of_scope[: out_of_scope.shape[0] * 8 // 10]), 99) < 10  # no heatmap


def test_orthancs_web_viewer_shows_the_heatmap_image_in_chromium(
    export: dict[str, Path], reports: Path, orthanc: Orthanc, tmp_path: Path
) -> None:
    """The image in a real viewer: Orthanc's web viewer plugin, in headless Chromium driven by Playwright."""
    sync_playwright = need_browser()
    if not WEB_VIEWER.is_file():
        if BROWSER_REQUIRED:
            pytest.fail("the web viewer is missing: apt-get install orthanc-webviewer")
        pytest.skip("the web viewer is not installed (apt-get install orthanc-webviewer)")
    node = f"ORTHANC@127.0.0.1:{orthanc.dicom}"
    assert xscan("sr", export["results"], "-o", reports, "--send", node).returncode == 0
    found = orthanc.post(
        "/tools/find",
        json.dumps({"Level": "Series", "Query": {"StudyInstanceUID": PNEUMONIA_STUDY, "Modality": "OT"}}).encode(),
    )
    assert len(found) == 1
    shot = tmp_path / "viewer.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.goto(
                f"http://127.0.0.1:{orthanc.http}/web-viewer/app/viewer.html?series={found[0]}",
                wait_until="networkidle",
            )
            page.wait_for_function("document.querySelectorAll('canvas').length > 0", timeout=30_000)
            page.wait_for_timeout(2000)  # the viewer draws the first instance after its pixels arrive
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    shown = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)
    assert (colourfulness(shown) > 60).sum() > 5000  # the heatmap's colour, drawn by the viewer
    amber = (shown[..., 0] > 180) & (shown[..., 1] > 120) & (shown[..., 2] < 90)
    assert amber.sum() > 30  # the banner's UNVERIFIED line


def test_an_unreachable_node_exits_3_could_not_deliver_and_keeps_the_files(
    export: dict[str, Path], reports: Path
) -> None:
    for node in (f"ORTHANC@127.0.0.1:{free_port()}", "ORTHANC@no-such-host.invalid:4242"):  # nobody listens; no host
        done = xscan("sr", export["results"], "-o", reports, "--send", node)
        assert done.returncode == 3, done.stderr
        assert "could not deliver" in done.stderr and "Traceback" not in done.stderr and "unexpected" not in done.stderr
        assert len(sr_files(reports)) == 3 and len(heatmap_files(reports)) == 5
        sent_log = reports / "sent.csv"
        assert not sent_log.exists() or node not in sent_log.read_text()
    assert "'no-such-host.invalid' is not a host name that resolves here" in done.stderr


def test_a_rejected_file_exits_3_stays_unlogged_and_is_sent_by_the_next_run(
    export: dict[str, Path], reports: Path, tmp_path: Path
) -> None:
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import Comprehensive3DSRStorage, SecondaryCaptureImageStorage

    folder = tmp_path / "sr"
    shutil.copytree(reports, folder, ignore=shutil.ignore_patterns("sent.csv"))
    stored: list[str] = []
    statuses = iter([0xA700])  # the first file: "out of resources"; the rest stored

    def on_store(event: evt.Event) -> int:
        status = next(statuses, 0x0000)
        if status == 0x0000:
            stored.append(event.request.AffectedSOPInstanceUID)
        return status

    scp = AE(ae_title="STORESCP")
    scp.add_supported_context(Comprehensive3DSRStorage)
    scp.add_supported_context(SecondaryCaptureImageStorage)
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        node = f"STORESCP@127.0.0.1:{port}"
        first = xscan("sr", export["results"], "-o", folder, "--send", node)
        assert first.returncode == 3
        assert f"{node} rejected 1 of 8 files" in first.stderr and "status 0xA700" in first.stderr
        assert len(stored) == 7
        second = xscan("sr", export["results"], "-o", folder, "--send", node)
        assert second.returncode == 0, second.stderr
        assert f"stored 1 on {node}; 7 were stored there before" in second.stderr
        assert len(set(stored)) == 8
    finally:
        server.shutdown()


def edited_results(source: Path, target: Path, edit) -> Path:
    """A copy of the results CSV SOURCE with EDIT(row) applied to each row (a dict of its cells)."""
    rows = rows_of(source)
    with open(target, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(edit(dict(row)) or row)
    return target


def test_changed_results_amend_the_report_with_its_predecessor(
    export: dict[str, Path], reports: Path, orthanc: Orthanc, tmp_path: Path
) -> None:
    folder = tmp_path / "sr"
    shutil.copytree(reports, folder, ignore=shutil.ignore_patterns("sent.csv"))
    first = pydicom.dcmread(folder / f"{PNEUMONIA_STUDY}.dcm")
    orthanc.post("/instances", (folder / f"{PNEUMONIA_STUDY}.dcm").read_bytes())  # the PACS holds the first report

    def lower_a1(row: dict[str, str]) -> dict[str, str]:
        if row["path"].endswith("a2.dcm"):
            row["probability"], row["label"] = "0.100000", "NORMAL"  # a second reading of the study changed
        return row

    changed = edited_results(export["results"], tmp_path / "changed.csv", lower_a1)
    done = xscan("sr", changed, "-o", folder, "--no-images")
    assert done.returncode == 0, done.stderr
    assert "(1 new or changed, 1 of them amending an earlier report)" in done.stderr
    amended = pydicom.dcmread(folder / f"{PNEUMONIA_STUDY}.dcm")
    assert amended.SOPInstanceUID != first.SOPInstanceUID
    assert (amended.SeriesInstanceUID, amended.InstanceNumber) == (first.SeriesInstanceUID, first.InstanceNumber + 1)
    predecessor = amended.PredecessorDocumentsSequence[0]
    assert predecessor.StudyInstanceUID == PNEUMONIA_STUDY
    reference = predecessor.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert reference.ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert pydicom.dcmread(folder / "replaced" / f"{PNEUMONIA_STUDY}.1.dcm").SOPInstanceUID == first.SOPInstanceUID
    check_report(folder / f"{PNEUMONIA_STUDY}.dcm")
    again = xscan("sr", changed, "-o", folder, "--no-images")  # the same changed results: nothing more
    assert again.returncode == 0 and "(0 new or changed" in again.stderr, again.stderr
    assert pydicom.dcmread(folder / f"{PNEUMONIA_STUDY}.dcm").SOPInstanceUID == amended.SOPInstanceUID
    # What a PACS shows (README): both reports, instances 1 and 2 of the one series, the second naming the first.
    sent = xscan("sr", changed, "-o", folder, "--no-images", "--send", f"ORTHANC@127.0.0.1:{orthanc.dicom}")
    assert sent.returncode == 0, sent.stderr
    held = orthanc.post(
        "/tools/find",
        json.dumps(
            {"Level": "Instance", "Query": {"SeriesInstanceUID": first.SeriesInstanceUID}, "Expand": True}
        ).encode(),
    )
    assert sorted(int(instance["MainDicomTags"]["InstanceNumber"]) for instance in held) == [1, 2]


def test_bad_inputs_exit_2_naming_what_is_wrong(export: dict[str, Path], tmp_path: Path) -> None:
    need_extra()

    def a1_gone(row: dict[str, str]) -> dict[str, str]:
        if row["path"].endswith("a1.dcm"):
            row["path"] = str(tmp_path / "moved" / "a1.dcm")
        return row

    gone = xscan("sr", edited_results(export["results"], tmp_path / "gone.csv", a1_gone), "-o", tmp_path / "sr1")
    assert gone.returncode == 2, gone.stderr
    assert f"{tmp_path / 'moved' / 'a1.dcm'} was scored but is gone" in gone.stderr
    assert not list((tmp_path / "sr1").glob("*.dcm")) if (tmp_path / "sr1").exists() else True
    root = xscan("sr", export["results"], "-o", tmp_path / "sr2", "--uid-root", "1.2.03.x")
    assert root.returncode == 2 and "is not a UID root" in root.stderr

    def other_model(row: dict[str, str]) -> dict[str, str]:
        row["model"] = "xscan-cnn-9.9.9-0badf00d"
        return row

    other = xscan("sr", edited_results(export["results"], tmp_path / "other.csv", other_model), "-o", tmp_path / "sr3")
    assert other.returncode == 2, other.stderr
    assert "the results come from model xscan-cnn-9.9.9-0badf00d" in other.stderr and "--no-images" in other.stderr


def test_an_output_folder_that_cannot_be_written_is_exit_3(export: dict[str, Path], tmp_path: Path) -> None:
    need_extra()
    (tmp_path / "a-file").write_text("not a folder")
    done = xscan("sr", export["results"], "-o", tmp_path / "a-file" / "sr", "--no-images")
    assert done.returncode == 3, done.stderr
    assert "cannot write structured reports into" in done.stderr and "unexpected" not in done.stderr


def test_a_site_root_and_another_install_make_other_uids(export: dict[str, Path], tmp_path: Path) -> None:
    need_extra()
    other = tmp_path / "state"
    done = xscan(
        "sr",
        export["results"],
        "-o",
        tmp_path / "sr",
        "--no-images",
        "--uid-root",
        "1.2.826.0.1.3680043.10.543",
        env={"XSCAN_STATE_DIR": str(other)},
    )
    assert done.returncode == 0, done.stderr
    report = pydicom.dcmread(tmp_path / "sr" / f"{NORMAL_STUDY}.dcm")
    assert report.SOPInstanceUID.startswith("1.2.826.0.1.3680043.10.543.")
    assert report.SeriesInstanceUID.startswith("1.2.826.0.1.3680043.10.543.")
    device = next(item for item in content_items(report) if item.ConceptNameCodeSequence[0].CodeValue == "121012")
    assert device.UID == (other / "device-uid").read_text().strip() != (STATE / "device-uid").read_text().strip()
    assert not (tmp_path / "sr" / "heatmaps").exists()


def test_a_study_whose_every_image_the_policy_skipped_gets_no_report(export: dict[str, Path], tmp_path: Path) -> None:
    need_extra()
    lateral_only = [row for row in rows_of(export["results"]) if row["path"].endswith("a3.dcm")]
    results = tmp_path / "lateral.csv"
    with open(results, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(lateral_only[0]))
        writer.writeheader()
        writer.writerows(lateral_only)
    done = xscan("sr", results, "-o", tmp_path / "sr")
    assert done.returncode == 0, done.stderr
    assert "0 reports" in done.stderr
    assert "1 DICOM studies got no report: the DICOM policy skipped every image of them" in done.stderr
    assert not list((tmp_path / "sr").glob("*.dcm"))


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
