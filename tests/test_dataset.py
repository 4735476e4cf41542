from pathlib import Path

import pytest
from conftest import TRAIN
from hypothesis import given, settings
from hypothesis import strategies as st

from xscan.dataset import LabelledScan, find_labelled_scans, patient_id, split_by_patient


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1_bacteria_1.jpeg", "person1"),
        ("person1_virus_6.jpeg", "person1"),
        ("person12_bacteria_46.jpeg", "person12"),
        ("IM-0115-0001.jpeg", "im-0115"),
        ("IM-0437-0001-0002.jpeg", "im-0437"),
        ("NORMAL2-IM-0115-0001.jpeg", "normal2-im-0115"),
        ("scan.png", "file:scan"),
    ],
)
def test_patient_id_rules(name, patient):
    assert patient_id(Path(name)) == patient


def test_finds_the_real_training_split():
    scans = find_labelled_scans(TRAIN)
    assert len(scans) == 5216
    assert sum(s.label == 0 for s in scans) == 1341


def test_class_folders_are_case_insensitive_and_required(tmp_path):
    (tmp_path / "normal").mkdir()
    with pytest.raises(FileNotFoundError, match="PNEUMONIA"):
        find_labelled_scans(tmp_path)
    (tmp_path / "Pneumonia").mkdir()
    assert find_labelled_scans(tmp_path) == []


def test_real_split_never_shares_a_patient():
    train, validation = split_by_patient(find_labelled_scans(TRAIN), 0.15, seed=1337)
    assert {s.patient_id for s in train}.isdisjoint({s.patient_id for s in validation})
    assert 0.10 < len(validation) / (len(train) + len(validation)) < 0.20


names = st.one_of(
    st.builds(lambda n, k: f"person{n}_bacteria_{k}.jpeg", st.integers(1, 40), st.integers(1, 999)),
    st.builds(lambda n, k: f"person{n}_virus_{k}.jpeg", st.integers(1, 40), st.integers(1, 999)),
    st.builds(lambda n: f"IM-{n:04d}-0001.jpeg", st.integers(1, 40)),
    st.builds(lambda n: f"NORMAL2-IM-{n:04d}-0001.jpeg", st.integers(1, 40)),
    st.text("abcxyz", min_size=1, max_size=6).map(lambda s: f"{s}.png"),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(names, max_size=60), st.floats(0.05, 0.95), st.integers(0, 10_000))
def test_split_never_leaks_a_patient(file_names, fraction, seed):
    scans = [LabelledScan(Path(n), i % 2, patient_id(Path(n))) for i, n in enumerate(file_names)]
    train, validation = split_by_patient(scans, fraction, seed)
    assert len(train) + len(validation) == len(scans)
    assert {s.patient_id for s in train}.isdisjoint({s.patient_id for s in validation})


def test_split_is_reproducible_and_order_independent():
    scans = find_labelled_scans(TRAIN)[:400]
    first = split_by_patient(scans, 0.2, seed=7)[1]
    second = split_by_patient(list(reversed(scans)), 0.2, seed=7)[1]
    assert {s.path for s in first} == {s.path for s in second}
