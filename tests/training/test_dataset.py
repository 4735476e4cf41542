from pathlib import Path

import pytest
from support.data import TRAIN, needs_data

from xscan.errors import TrainingDataError
from xscan.model.card import default_weights_dir, read_card
from xscan.model.classes import CLASS_NAMES
from xscan.training.config import card_split
from xscan.training.dataset import find_labelled_scans, patient_id, split_by_patient
from xscan.training.parts import split_for_training


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


@needs_data
def test_finds_the_real_training_split():
    scans = find_labelled_scans(TRAIN)
    assert len(scans) == 5216
    assert sum(s.label == 0 for s in scans) == 1341


def test_class_folders_are_case_insensitive_and_required(tmp_path):
    (tmp_path / "normal").mkdir()
    with pytest.raises(TrainingDataError, match="PNEUMONIA"):
        find_labelled_scans(tmp_path)
    (tmp_path / "Pneumonia").mkdir()
    assert find_labelled_scans(tmp_path) == []


@needs_data
def test_every_real_file_name_names_its_patient():
    scans = find_labelled_scans(TRAIN)
    assert [s.path.name for s in scans if s.patient_id.startswith("file:")] == []  # no name falls through the rules
    assert len({s.patient_id for s in scans}) < 0.6 * len(scans)  # 2,846 patients: many have several scans


@needs_data
def test_the_split_is_the_one_the_bundled_model_card_records():
    """Tests that use validation scans, and the card's validation numbers, rely on this split."""
    card = read_card(default_weights_dir())
    recorded = card.training.data
    train, select, report = split_for_training(find_labelled_scans(TRAIN), card_split(card))
    assert (_counts(train), _counts(select), _counts(report)) == (recorded.train, recorded.selection, recorded.report)
    assert len({s.patient_id for s in report}) == recorded.report_patients


def _counts(scans):
    return {name: sum(s.label == label for s in scans) for label, name in enumerate(CLASS_NAMES)}


@needs_data
def test_split_is_reproducible_and_order_independent():
    scans = find_labelled_scans(TRAIN)[:400]
    first = split_by_patient(scans, 0.2, seed=7)[1]
    second = split_by_patient(list(reversed(scans)), 0.2, seed=7)[1]
    assert {s.path for s in first} == {s.path for s in second}
