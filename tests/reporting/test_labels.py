"""Ground truth from folder names and from a labels CSV."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.data import TRAIN, needs_data

from xscan.errors import LabelsError
from xscan.model.classes import parse_label
from xscan.reporting.labels import FileLabels, FolderLabels
from xscan.training.dataset import find_labelled_scans


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/data/chest_xray/test/NORMAL/IM-0001-0001.jpeg", 0),
        ("/data/chest_xray/test/PNEUMONIA/person1_virus_6.jpeg", 1),
        ("scans/pneumonia/a.png", 1),  # any case
        ("C:\\scans\\Normal\\a.png", 0),  # Windows separators
        ("/data/PNEUMONIA/NORMAL/a.png", 0),  # the folder nearest the file wins
        ("/data/abnormal/a.png", None),  # whole folder names only
        ("/data/NORMAL2-IM-0746-0001.jpeg", None),  # a file name says nothing
        ("/data/NORMAL", None),  # ... even when it is the whole word
        ("", None),
    ],
)
def test_folder_labels(path: str, expected: int | None) -> None:
    assert FolderLabels()(path) == expected


@needs_data
def test_folder_labels_agree_with_the_training_split_on_every_file() -> None:
    """Real paths: .../chest_xray/train/NORMAL/NORMAL2-IM-0746-0001.jpeg must not be read by file name."""
    truth = FolderLabels()
    assert [truth(str(scan.path)) for scan in find_labelled_scans(TRAIN)] == [
        scan.label for scan in find_labelled_scans(TRAIN)
    ]


@pytest.mark.parametrize(
    ("text", "expected"), [("NORMAL", 0), ("pneumonia", 1), (" Pneumonia ", 1), ("0", 0), ("1", 1)]
)
def test_parse_label(text: str, expected: int) -> None:
    assert parse_label(text) == expected


@pytest.mark.parametrize("text", ["", "2", "abnormal", "yes"])
def test_parse_label_rejects_others(text: str) -> None:
    with pytest.raises(LabelsError, match="NORMAL, PNEUMONIA, 0 or 1"):
        parse_label(text)


def _labels_csv(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(text, encoding=encoding)
    return path


def test_file_labels_match_by_whole_path_never_by_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = _labels_csv(tmp_path, "path,label\n/scans/a.jpeg,PNEUMONIA\nb.jpeg,normal\nsub/c.jpeg,1\n/x/d.jpeg,0\n")
    truth = FileLabels.read(source)
    assert truth("/scans/a.jpeg") == 1
    assert truth("/scans/./a.jpeg") == 1  # the same file
    assert truth("/elsewhere/b.jpeg") is None  # a file name alone says nothing
    assert (
        truth("b.jpeg") == 0 and truth(str(tmp_path / "b.jpeg")) == 0
    )  # relative paths are taken from the current folder
    assert truth("/other/root/c.jpeg") is None
    assert truth("/x/d.jpeg") == 0
    assert truth("/scans/unknown.jpeg") is None
    assert "4 entries" in truth.description and "matched by path" in truth.description


def test_same_named_files_in_two_folders_keep_their_own_labels(tmp_path: Path) -> None:
    source = _labels_csv(tmp_path, "path,label\nstudy1/IM0001.dcm,NORMAL\nstudy2/IM0001.dcm,PNEUMONIA\n")
    truth = FileLabels.read(source, root=Path("/data/export"))
    assert truth("/data/export/study1/IM0001.dcm") == 0
    assert truth("/data/export/study2/IM0001.dcm") == 1
    assert truth("/data/export/study3/IM0001.dcm") is None
    assert truth("/data/study1/IM0001.dcm") is None
    assert "below /data/export" in truth.description


def test_file_labels_accept_a_byte_order_mark_extra_columns_and_spreadsheet_safe_paths(tmp_path: Path) -> None:
    source = _labels_csv(
        tmp_path, "patient,path,label\np1,/x/a.jpeg,PNEUMONIA\np2,'=/x/b.jpeg,0\n", encoding="utf-8-sig"
    )
    truth = FileLabels.read(source)
    assert truth("/x/a.jpeg") == 1 and truth("=/x/b.jpeg") == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,diagnosis\na.jpeg,NORMAL\n", "missing column\\(s\\) path, label"),
        ("path,label\na.jpeg,NORMAL\nb.jpeg,maybe\n", "line 3: label 'maybe'"),
        ("path,label\na.jpeg,NORMAL\na.jpeg,PNEUMONIA\n", "line 3: a.jpeg is listed with both labels"),
        ("path,label\n,NORMAL\n", "line 2: the path is empty"),
        ("path,label\n", "no labels"),
    ],
)
def test_file_labels_errors_say_where(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(LabelsError, match=message):
        FileLabels.read(_labels_csv(tmp_path, text))


def test_a_results_file_is_not_ground_truth(tmp_path: Path) -> None:
    source = _labels_csv(tmp_path, "path,probability,label,threshold,model,error\na.jpeg,0.9,PNEUMONIA,0.5,m,\n")
    with pytest.raises(LabelsError, match="label column is the model's prediction, not ground truth"):
        FileLabels.read(source)
