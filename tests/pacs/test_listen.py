"""`xscan listen` against dcmtk's echoscu and storescu, and a pynetdicom storage SCP this test runs for the reports.

Covered: echo, storage, the allow-list, hostile UIDs, TLS, a full disk, SIGTERM, --status and the exit codes.

Each listener is a real `xscan listen` process on a free port with a quiet period of 1 s; the
films are DICOM copies of real films of the data set.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage
from support.data import TRAIN, require_data
from support.pacs import ListenerProcess, dcmtk, free_port, need_extra, need_tool, status, store_files, write_film
from support.processes import ENV

from xscan.errors import EXIT_FATAL, EXIT_OK, EXIT_USAGE

pytestmark = [pytest.mark.slow, pytest.mark.real_component]

STUDY = "1.2.826.0.1.3680043.10.543.31.1"
ALLOWED = "STORESCU,ECHOSCU,PYSCU"


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """STUDY: two frontal films and a lateral one (stored, and skipped by the DICOM policy)."""
    require_data()
    need_extra()
    folder = tmp_path_factory.mktemp("films")
    pneumonia = sorted((TRAIN / "PNEUMONIA").glob("person1_*"))[:2]
    write_film(folder / "a1.dcm", pneumonia[0], "P1", STUDY, 1)
    write_film(folder / "a2.dcm", pneumonia[1], "P1", STUDY, 2)
    write_film(folder / "a3.dcm", pneumonia[1], "P1", STUDY, 3, view="LL")
    return folder


class Destination:
    """A pynetdicom storage SCP standing in for the PACS that takes the reports."""

    def __init__(self, port: int | None = None) -> None:
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import Comprehensive3DSRStorage

        self.received: list[pydicom.Dataset] = []
        self.arrived = threading.Condition()
        ae = AE(ae_title="DEST")
        ae.add_supported_context(Comprehensive3DSRStorage)
        ae.add_supported_context(SecondaryCaptureImageStorage)
        self.port = port or free_port()
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
        )

    def _on_store(self, event: object) -> int:
        with self.arrived:
            self.received.append(event.dataset)
            self.arrived.notify_all()
        return 0x0000

    @property
    def node(self) -> str:
        return f"DEST@127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def destination():
    need_extra()
    scp = Destination()
    yield scp
    scp.server.shutdown()


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory, destination: Destination):
    need_extra()
    process = ListenerProcess(
        tmp_path_factory.mktemp("listen") / "store", "--allow", ALLOWED, "--send", destination.node
    )
    yield process
    process.close()


def test_echo_answers_and_is_logged(listener: ListenerProcess) -> None:
    done = subprocess.run(
        [dcmtk("echoscu"), "-aet", "ECHOSCU", "-aec", "XSCAN", "127.0.0.1", str(listener.port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    listener.wait_for(r"association from 127\.0\.0\.1:\d+ \(ECHOSCU\): 0 instances stored; released")


def test_a_calling_ae_title_not_allowed_is_rejected(listener: ListenerProcess) -> None:
    done = subprocess.run(
        [dcmtk("echoscu"), "-aet", "INTRUDER", "127.0.0.1", str(listener.port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "Calling AE Title Not Recognized" in done.stdout + done.stderr
    listener.wait_for(r"\(INTRUDER\): 0 instances stored; rejected")


def test_a_study_from_storescu_is_scored_reported_and_sent(
    listener: ListenerProcess, films: Path, destination: Destination
) -> None:
    from xscan.pacs.studies import file_of
    from xscan.scoring.results import read_rows

    done = subprocess.run(
        [
            dcmtk("storescu"),
            "-aet",
            "STORESCU",
            "127.0.0.1",
            str(listener.port),
            *sorted(map(str, films.glob("*.dcm"))),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    listener.wait_for(r"\(STORESCU\): 3 instances stored; released")
    (study,) = listener.wait_for(rf"study {STUDY}: 3 instances, PNEUMONIA \(\d\.\d+\); queued for {destination.node}")
    # The report and a heatmap image for each of the two scored films (the lateral is skipped: none).
    listener.wait_for(rf"study {STUDY}: 3 report files stored on {destination.node}")
    with destination.arrived:
        destination.arrived.wait_for(lambda: len(destination.received) >= 3, timeout=30)
    (report,) = [instance for instance in destination.received if instance.Modality == "SR"]
    assert len(destination.received) == 3 and {instance.StudyInstanceUID for instance in destination.received} == {
        STUDY
    }
    assert report.StudyInstanceUID == STUDY and report.Modality == "SR" and report.PatientID == "P1"
    rows = list(read_rows(listener.store / "results.csv"))
    assert len(rows) == 3 and sum(row.skipped_by_policy for row in rows) == 1  # the lateral: stored, skipped
    stored = {file_of(row).stem for row in rows}
    assert stored == {str(pydicom.dcmread(path).SOPInstanceUID) for path in films.glob("*.dcm")}
    counted = status(listener.store)
    assert counted.returncode == EXIT_OK, counted.stderr
    assert "received: 3 instances" in counted.stdout and "scored: 3 instances; 1 studies reported" in counted.stdout
    assert "sent: 3 report files" in counted.stdout and "waiting to be resent: 0" in counted.stdout


COMPRESSED = "1.2.826.0.1.3680043.10.543.31.2"


def test_compressed_transfer_syntaxes_are_received_and_scored(listener: ListenerProcess, films: Path) -> None:
    """RLE, JPEG-LS and JPEG 2000 films, sent in their own transfer syntax, are stored as they came and scored."""
    from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

    from xscan.pacs.studies import file_of
    from xscan.scoring.results import read_rows

    folder = films.parent / "compressed"
    folder.mkdir(exist_ok=True)
    source = sorted((TRAIN / "NORMAL").iterdir())[0]
    proposals = {RLELossless: "-xr", JPEGLSLossless: "-xt", JPEG2000Lossless: "-xv"}  # storescu's flag for each
    for number, (syntax, flag) in enumerate(proposals.items(), start=1):
        film = pydicom.dcmread(write_film(folder / f"c{number}.dcm", source, "P2", COMPRESSED, number))
        film.compress(syntax)
        film.save_as(folder / f"c{number}.dcm", enforce_file_format=True)
        done = subprocess.run(
            [
                dcmtk("storescu"),
                flag,
                "-R",
                "-aet",
                "STORESCU",
                "127.0.0.1",
                str(listener.port),
                folder / f"c{number}.dcm",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    listener.wait_for(rf"study {COMPRESSED}: 3 instances, NORMAL")
    rows = [row for row in read_rows(listener.store / "results.csv") if file_of(row).parent.name == COMPRESSED]
    assert len(rows) == 3 and all(row.probability is not None and not row.error for row in rows)
    syntaxes = {str(pydicom.dcmread(file_of(row), stop_before_pixels=True).file_meta.TransferSyntaxUID) for row in rows}
    assert syntaxes == {RLELossless, JPEGLSLossless, JPEG2000Lossless}  # stored as they came


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize(
    ("keyword", "uid"),
    [("SOPInstanceUID", "../../x"), ("SOPInstanceUID", "1.2.3/../../x"), ("StudyInstanceUID", "../../x")],
)
def test_a_uid_that_is_not_a_dicom_uid_is_refused_and_never_a_path(
    listener: ListenerProcess, films: Path, keyword: str, uid: str
) -> None:
    film = pydicom.dcmread(films / "a1.dcm")
    setattr(film, keyword, uid)
    before = len(listener.wait_for(r"\(PYSCU\): 0 instances stored, 1 refused", count=0))
    (answer,) = store_files("PYSCU", listener.port, [film])
    assert answer is not None and answer >= 0xA000  # a failure status: not stored
    listener.wait_for(r"\(PYSCU\): 0 instances stored, 1 refused \(first: .* is not a DICOM UID\)", count=before + 1)
    assert not list(listener.store.parent.rglob("x*")) and not list(listener.store.rglob("*.part"))


def test_port_in_use_bad_options_and_no_store_exit_with_their_codes(listener: ListenerProcess, tmp_path: Path) -> None:
    def run(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "xscan.cli", "listen", *options],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=120,
        )

    busy = run("--store", str(tmp_path / "other"), "--port", str(listener.port))
    assert busy.returncode == EXIT_USAGE and f"port {listener.port} is already in use" in busy.stderr
    bad = run("--store", str(tmp_path / "other"), "--send", "pacs:4242")
    assert bad.returncode == EXIT_USAGE and "AET@HOST:PORT" in bad.stderr
    (tmp_path / "file").write_text("not a folder")
    unusable = run("--store", str(tmp_path / "file" / "below"), "--port", str(free_port()))
    assert unusable.returncode == EXIT_FATAL and "listener" in unusable.stderr
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "listen.sqlite").write_bytes(b"not sqlite at all" * 100)
    damaged = run("--store", str(tmp_path / "damaged"), "--status")
    assert damaged.returncode == EXIT_FATAL and "listen.sqlite" in damaged.stderr


def make_certificates(folder: Path) -> Path:
    """In FOLDER: a CA; the listener's and a client's key and certificate signed by it; a self-signed client pair."""
    openssl = need_tool("openssl", "openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=folder, timeout=60)

    for name in ("ca", "rogue"):
        run(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-subj",
            f"/CN=xscan {name}",
        )
    for name in ("server", "client"):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
        )
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
        )
    return folder


def test_tls_takes_a_client_whose_certificate_chains_to_the_ca_and_no_other(films: Path, tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    tls = [
        "--tls-cert",
        str(certs / "server.crt"),
        "--tls-key",
        str(certs / "server.key"),
        "--tls-ca",
        str(certs / "ca.crt"),
    ]
    listener = ListenerProcess(tmp_path / "store", *tls)
    try:
        film = str(films / "a1.dcm")
        trusted = ["+tls", str(certs / "client.key"), str(certs / "client.crt"), "+cf", str(certs / "ca.crt")]
        stored = subprocess.run(
            [dcmtk("storescu"), "-aet", "STORESCU", *trusted, "127.0.0.1", str(listener.port), film],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert stored.returncode == 0, stored.stdout + stored.stderr
        listener.wait_for(r"\(STORESCU\): 1 instances stored; released")
        rogue = ["+tls", str(certs / "rogue.key"), str(certs / "rogue.crt"), "+cf", str(certs / "ca.crt")]
        for refused in (rogue, []):  # a certificate the CA did not sign; no TLS at all
            done = subprocess.run(
                [dcmtk("storescu"), "-aet", "STORESCU", *refused, "127.0.0.1", str(listener.port), film],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode != 0, refused
        assert len(listener.wait_for(r"instances stored")) == 1  # neither got as far as an association
        assert listener.terminate() == EXIT_OK
    finally:
        listener.close()


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 16 MB tmpfs (mounting one needs root or CAP_SYS_ADMIN; without it the test is skipped, saying so)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def test_a_full_disk_answers_out_of_resources_leaves_no_partial_file_and_the_listener_goes_on(
    films: Path, small_disk: Path, tmp_path: Path
) -> None:
    from support.data import FULLRES

    require_data()
    largest = max((FULLRES / "PNEUMONIA").iterdir(), key=lambda path: path.stat().st_size)
    big = write_film(tmp_path / "big.dcm", largest, "P9", "1.2.826.0.1.3680043.10.543.31.9", 1)
    listener = ListenerProcess(small_disk / "store")
    ballast = small_disk / "ballast"  # the disk filled by something else, up to less than the film needs
    free = shutil.disk_usage(small_disk).free
    ballast.write_bytes(bytes(max(0, free - big.stat().st_size // 2)))
    try:
        (full,) = store_files("PYSCU", listener.port, [pydicom.dcmread(big)])
        assert full == 0xA700  # Out of Resources: the sender keeps the instance and retries
        assert not list((small_disk / "store").rglob("*.part")) and not list((small_disk / "store").rglob("*.dcm"))
        ballast.unlink()  # space again (the film's report and heatmap image need some too): the listener goes on
        (stored,) = store_files("PYSCU", listener.port, [pydicom.dcmread(films / "a1.dcm")])
        assert stored == 0x0000
        listener.wait_for(rf"study {STUDY}: 1 instances, PNEUMONIA")
        assert len(list((small_disk / "store" / "instances").rglob("*.dcm"))) == 1
        assert listener.terminate() == EXIT_OK
    finally:
        listener.close()


def test_sigterm_refuses_new_associations_lets_the_one_in_progress_finish_and_exits_0(
    films: Path, tmp_path: Path
) -> None:
    from pynetdicom import AE

    listener = ListenerProcess(tmp_path / "store", quiet_period=60)
    try:
        ae = AE(ae_title="PYSCU")
        ae.add_requested_context(pydicom.dcmread(films / "a1.dcm").SOPClassUID, [ExplicitVRLittleEndian])
        association = ae.associate("127.0.0.1", listener.port, ae_title="XSCAN")
        assert association.is_established
        listener.process.send_signal(signal.SIGTERM)
        listener.wait_for(r"stopping: no new associations; waiting for 1 in progress")
        late = subprocess.run(
            [dcmtk("echoscu"), "127.0.0.1", str(listener.port)], capture_output=True, text=True, timeout=60
        )
        assert late.returncode != 0  # no longer accepting
        assert association.send_c_store(pydicom.dcmread(films / "a1.dcm")).Status == 0x0000
        association.release()
        assert listener.process.wait(timeout=60) == EXIT_OK
        listener.wait_for(r"\(PYSCU\): 1 instances stored; released")
        listener.wait_for(r"stopped: every association in progress finished")
        counted = status(tmp_path / "store")
        assert "received: 1 instances" in counted.stdout and "awaiting the quiet period: 1 instances" in counted.stdout
    finally:
        listener.close()


def test_a_destination_that_is_down_is_retried_with_backoff_and_listed_until_it_takes_the_report(
    films: Path, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there yet
    node = f"DEST@127.0.0.1:{port}"
    listener = ListenerProcess(tmp_path / "store", "--send", node)
    try:
        (stored,) = store_files("PYSCU", listener.port, [pydicom.dcmread(films / "a1.dcm")])
        assert stored == 0x0000  # reception does not wait for the destination
        # The report and the film's heatmap image wait for the destination.
        listener.wait_for(rf"could not store 2 files on {node} \(no association.*\); next try in 5 s")
        waiting = status(tmp_path / "store")
        assert "waiting to be resent: 2 report files" in waiting.stdout
        assert f"{node}: 2 files; last error: {node}: no association" in waiting.stdout
        destination = Destination(port)
        try:
            listener.wait_for(rf"study {STUDY}: \d+ report files stored on {node}", timeout=60)
            with destination.arrived:  # the two may go in one retry or two
                destination.arrived.wait_for(lambda: len(destination.received) >= 2, timeout=60)
            assert [report.StudyInstanceUID for report in destination.received] == [STUDY, STUDY]
        finally:
            destination.server.shutdown()
        assert "sent: 2 report files" in status(tmp_path / "store").stdout
        assert listener.terminate() == EXIT_OK
    finally:
        listener.close()


def test_the_library_listener_scores_with_the_site_calibration_and_a_preloaded_model(
    films: Path, tmp_path: Path, scorer
) -> None:
    from support.site import site_sample

    from xscan.model.site_calibration import load_site
    from xscan.pacs.listen.node import Listener, ListenOptions, StudyReported
    from xscan.reporting.labels import FolderLabels
    from xscan.scoring.results import read_rows
    from xscan.site.calibrate import fit_site_calibration, select_rows

    site = fit_site_calibration(select_rows(site_sample(30), FolderLabels()))
    site_file = tmp_path / "site.json"
    site_file.write_text(type(site)(**{**site.__dict__, "base_model": scorer.card.model_id}).to_json())
    reported = threading.Event()
    options = ListenOptions(store=tmp_path / "store", port=0, host="127.0.0.1", quiet_period=0.5, calibration=site_file)
    listener = Listener(
        options, on_event=lambda event: isinstance(event, StudyReported) and reported.set(), scorer=scorer
    )
    listener.start()
    try:
        assert store_files("PYSCU", listener.port, [pydicom.dcmread(films / "a1.dcm")]) == [0x0000]
        assert reported.wait(timeout=60)
    finally:
        listener.request_stop()
        listener.serve()
    (row,) = read_rows(tmp_path / "store" / "results.csv")
    assert row.model == load_site(site_file, scorer.card.model_id).model_id()
    assert row.threshold == pytest.approx(site.threshold, abs=1e-6)


def test_a_destination_that_does_not_resolve_is_marked_failed_and_the_next_one_still_gets_its_files(
    tmp_path: Path,
) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    from xscan.pacs.listen.forward import Backoff, SendFailed, StudySent, send_due
    from xscan.pacs.listen.store import Queued, Store

    need_extra()
    absent = "ABSENT@nonexistent.invalid:104"  # sorts before DEST: the failure comes first
    destination = Destination()
    store = Store(tmp_path / "store")
    try:
        queue = []
        for node in (absent, destination.node):
            uid = generate_uid()
            dataset = Dataset()
            dataset.file_meta = FileMetaDataset()
            dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            dataset.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
            dataset.file_meta.MediaStorageSOPInstanceUID = uid
            dataset.SOPClassUID, dataset.SOPInstanceUID, dataset.StudyInstanceUID = (
                SecondaryCaptureImageStorage,
                uid,
                STUDY,
            )
            file = tmp_path / f"{uid}.dcm"
            dataset.save_as(file, enforce_file_format=True)
            queue.append(Queued(node, uid, SecondaryCaptureImageStorage, STUDY, file, 0))
        store.complete_study(STUDY, "", [], queue, last_arrival=0.0, now=0.0)
        events: list[StudySent | SendFailed] = []
        send_due(store, "XSCAN", Backoff(base=5.0), events.append)
        (failed,) = [event for event in events if isinstance(event, SendFailed)]
        assert (failed.destination, failed.files, failed.retry_in) == (absent, 1, 5.0)
        assert "'nonexistent.invalid' is not a host name that resolves here" in failed.reason
        assert [str(received.SOPInstanceUID) for received in destination.received] == [queue[1].sop_instance_uid]
        assert [event.destination for event in events if isinstance(event, StudySent)] == [destination.node]
        (waiting,) = store.counts().undelivered
        assert (waiting.destination, waiting.files) == (absent, 1)
        assert waiting.last_error.startswith(f"{absent}: 'nonexistent.invalid' is not a host name")
        (retry,) = store.due(now=1e12)
        assert (retry.destination, retry.attempts) == (absent, 1)
    finally:
        store.close()
        destination.server.shutdown()
