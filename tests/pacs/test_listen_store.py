"""The listener's parts that need no network: its state store, durable writes, UIDs, allow-list, backoff, options."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from xscan.errors import OptionError
from xscan.pacs.listen.forward import Backoff
from xscan.pacs.listen.node import ListenOptions
from xscan.pacs.listen.receive import Allowed, valid_uid, write_durably
from xscan.pacs.listen.store import Instance, Queued, ReportFile, Store, StoreError
from xscan.pacs.send import Node


def instance(store: Path, sop: str, study: str = "1.2.3") -> Instance:
    return Instance(sop, study, "1.2.840.10008.5.1.4.1.1.1.1", store / "instances" / study / f"{sop}.dcm", "PACS")


def test_an_instance_is_awaiting_until_its_study_is_reported_and_a_late_one_reopens_it(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.add_instance(instance(tmp_path, "1.1"), received_at=100.0)
    store.add_instance(instance(tmp_path, "1.2"), received_at=101.0)
    assert store.quiet_studies(last_arrival_before=200.0) == []  # nothing scored yet
    store.mark_scored(received_before=101.0, scored_at=102.0)
    assert store.unscored() == (1, 101.0)  # 1.2 arrived as the pass began: the next pass scores it
    store.mark_scored(received_before=150.0, scored_at=151.0)
    assert store.quiet_studies(last_arrival_before=100.5) == []  # its last instance is not quiet yet
    assert store.quiet_studies(last_arrival_before=200.0) == [("1.2.3", 101.0)]
    report = ReportFile(tmp_path / "reports" / "1.2.3.dcm", "1:2:3", "1.2.3", "9.9", "1.2.840.10008.5.1.4.1.1.88.34")
    queued = Queued("DEST@h:104", "9.9", report.sop_class_uid, "1.2.3", tmp_path / "outbox" / "9.9.dcm", 0)
    store.complete_study("1.2.3", "NORMAL (0.1)", [report], [queued], last_arrival=101.0, now=160.0)
    counts = store.counts()
    assert (counts.received, counts.awaiting, counts.scored, counts.studies_reported, counts.to_send) == (2, 0, 2, 1, 1)
    assert store.report_fingerprints() == {str(report.path): "1:2:3"}
    store.add_instance(instance(tmp_path, "1.3"), received_at=170.0)  # a late instance re-opens its study
    assert store.counts().awaiting == 3


def test_a_study_that_got_an_instance_while_it_was_reported_stays_open(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.add_instance(instance(tmp_path, "1.1"), received_at=100.0)
    store.add_instance(instance(tmp_path, "1.2"), received_at=130.0)  # arrived while the report was being made
    store.complete_study("1.2.3", "NORMAL (0.1)", [], [], last_arrival=100.0, now=131.0)
    assert store.counts().awaiting_studies == 1


def test_the_queue_backs_off_records_the_last_error_and_keeps_what_was_sent(tmp_path: Path) -> None:
    store = Store(tmp_path)
    item = Queued("DEST@h:104", "9.9", "1.2.840.10008.5.1.4.1.1.88.34", "1.2.3", tmp_path / "9.9.dcm", 0)
    store.complete_study("1.2.3", "", [], [item], last_arrival=0.0, now=10.0)
    assert [due.sop_instance_uid for due in store.due(now=10.0)] == ["9.9"]
    store.mark_failed(item, "DEST@h:104: association rejected", next_try=15.0)
    assert store.due(now=14.0) == [] and store.next_try() == 15.0
    (waiting,) = store.counts().undelivered
    assert (waiting.destination, waiting.files, waiting.last_error) == (
        "DEST@h:104",
        1,
        "DEST@h:104: association rejected",
    )
    store.close()
    reopened = Store(tmp_path)  # the queue survives a restart
    (again,) = reopened.due(now=15.0)
    assert again.attempts == 1
    reopened.mark_sent(again, now=16.0)
    counts = reopened.counts()
    assert (counts.sent, counts.to_send, counts.to_resend) == (1, 0, 0)


def test_a_file_that_is_not_a_listener_store_is_refused_untouched(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist|holds no listener state"):
        Store(tmp_path / "none", create=False)
    other = sqlite3.connect(tmp_path / "listen.sqlite")
    other.execute("CREATE TABLE patients (name TEXT)")
    other.commit()
    other.close()
    before = (tmp_path / "listen.sqlite").read_bytes()
    with pytest.raises(StoreError, match="not an xscan listener's state file"):
        Store(tmp_path)
    assert (tmp_path / "listen.sqlite").read_bytes() == before


def test_a_durable_write_that_fails_leaves_no_file(tmp_path: Path) -> None:
    scratch = tmp_path / "incoming"
    scratch.mkdir()
    target = tmp_path / "instances" / "1.2" / "3.4.dcm"
    (tmp_path / "instances").write_text("a file where the folder should be")
    with pytest.raises(OSError):
        write_durably(b"DICM", target, scratch)
    assert list(scratch.iterdir()) == []
    (tmp_path / "instances").unlink()
    (tmp_path / "instances").mkdir()
    write_durably(b"DICM", target, scratch)
    assert target.read_bytes() == b"DICM" and list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    ("uid", "valid"),
    [
        ("1.2.840.10008.5.1.4.1.1.1", True),
        ("0", True),
        ("../../x", False),
        ("1.2/../3", False),
        ("1..2", False),
        ("1.2.", False),
        ("", False),
        ("1." + "2" * 63, False),  # 65 characters
        ("1.2 ", False),
    ],
)
def test_only_the_dicom_uid_grammar_becomes_a_path_part(uid: str, valid: bool) -> None:
    assert valid_uid(uid) is valid


def test_the_allow_list_names_ae_titles_and_optionally_hosts() -> None:
    anyone, local = Allowed.parse_list("PACS, MODALITY@127.0.0.1")
    assert anyone.admits("PACS", "10.1.2.3") and not anyone.admits("OTHER", "10.1.2.3")
    assert local.admits("MODALITY", "127.0.0.1") and not local.admits("MODALITY", "10.1.2.3")
    for bad in ("A" * 17, "A@", "BACK\\SLASH", ""):
        with pytest.raises(OptionError, match="--allow"):
            Allowed.parse_list(bad)


def test_backoff_doubles_from_its_base_up_to_its_cap() -> None:
    backoff = Backoff(base=5.0, cap=600.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]
    assert backoff.delay(30) == 600.0


def test_options_refuse_what_cannot_run(tmp_path: Path) -> None:
    for bad in (
        {"tls_cert": tmp_path / "c.pem"},
        {"tls_ca": tmp_path / "ca.pem"},
        {"ae_title": "A" * 17},
        {"quiet_period": -1.0},
        {"port": 70000},
    ):
        with pytest.raises(OptionError):
            ListenOptions(store=tmp_path, **bad)


@pytest.mark.parametrize(
    "text", ["PACS@[::1]:4242", "PACS@[fe80::1]:104", "PACS@pacs.example.org:4242", "P@10.0.0.1:1"]
)
def test_a_node_reads_back_what_it_writes_an_ipv6_host_in_brackets(text: str) -> None:
    node = Node.parse(text)
    assert str(node) == text
    assert Node.parse(str(node)) == node
