"""Choosing the review page's galleries from hand-built rows: membership, order (most wrong first), caps and totals."""

from xscan.reporting.galleries import OUT_OF_SCOPE, choose_galleries
from xscan.reporting.labels import FolderLabels
from xscan.scoring.results import Row

THRESHOLD = 0.5


def _record(path: str, probability: float | None, error: str = "", scope: str = "") -> Row:
    return Row(path, probability, THRESHOLD, "m", error, scope=scope)


RECORDS = [
    _record("s/PNEUMONIA/p1.png", 0.10),  # missed, badly
    _record("s/PNEUMONIA/p2.png", 0.45),  # missed, narrowly
    _record("s/PNEUMONIA/p3.png", 0.30),  # missed
    _record("s/PNEUMONIA/p4.png", 0.90),
    _record("s/NORMAL/n1.png", 0.56),  # false alarm, narrowly
    _record("s/NORMAL/n2.png", 0.95),  # false alarm, badly
    _record("s/NORMAL/n3.png", 0.05),
    _record("s/NORMAL/n4.png", 0.02),
    _record("s/NORMAL/odd.png", 0.99, scope="not a chest radiograph (0.98)"),
    _record("s/PNEUMONIA/cut.jpeg", None, error="truncated JPEG"),
    _record("s/elsewhere/x.png", 0.51),  # no ground truth
]


def _by_key(galleries):
    return {gallery.key: gallery for gallery in galleries}


def test_with_labels_misses_and_false_alarms_most_wrong_first():
    galleries = _by_key(choose_galleries(RECORDS, THRESHOLD, FolderLabels(), size=10))
    assert list(galleries) == ["false-negatives", "false-positives", "nearest-threshold", "out-of-scope", "errors"]
    assert [e.path for e in galleries["false-negatives"].entries] == [
        "s/PNEUMONIA/p1.png",
        "s/PNEUMONIA/p3.png",
        "s/PNEUMONIA/p2.png",
    ]
    assert [e.path for e in galleries["false-positives"].entries] == ["s/NORMAL/n2.png", "s/NORMAL/n1.png"]
    assert all(e.truth == 1 and e.label == "NORMAL" for e in galleries["false-negatives"].entries)


def test_nearest_the_threshold_holds_every_scored_in_scope_row():
    nearest = _by_key(choose_galleries(RECORDS, THRESHOLD, FolderLabels(), size=3))["nearest-threshold"]
    assert nearest.total == 9  # 11 rows less the out-of-scope and the failed one
    assert [e.path for e in nearest.entries] == ["s/elsewhere/x.png", "s/PNEUMONIA/p2.png", "s/NORMAL/n1.png"]


def test_out_of_scope_rows_have_their_own_gallery_and_no_other():
    galleries = choose_galleries(RECORDS, THRESHOLD, FolderLabels(), size=10)
    [odd] = _by_key(galleries)["out-of-scope"].entries
    assert (odd.label, odd.note) == (OUT_OF_SCOPE, "not a chest radiograph (0.98)")
    assert all(
        e.path != odd.path for g in galleries if g.key != "out-of-scope" for e in g.entries
    )  # a normal at 0.99 is no false positive


def test_failed_rows_are_listed_with_their_error():
    [failed] = _by_key(choose_galleries(RECORDS, THRESHOLD, FolderLabels(), size=10))["errors"].entries
    assert (failed.path, failed.probability, failed.note) == ("s/PNEUMONIA/cut.jpeg", None, "truncated JPEG")


def test_the_cap_keeps_the_total():
    galleries = _by_key(choose_galleries(RECORDS, THRESHOLD, FolderLabels(), size=1))
    assert [(len(g.entries), g.total) for g in galleries.values()] == [(1, 3), (1, 2), (1, 9), (1, 1), (1, 1)]
    assert galleries["false-negatives"].entries[0].path == "s/PNEUMONIA/p1.png"


def test_the_reports_threshold_decides_the_labels():
    galleries = _by_key(choose_galleries(RECORDS, 0.2, FolderLabels(), size=10))
    assert [e.path for e in galleries["false-negatives"].entries] == ["s/PNEUMONIA/p1.png"]
    assert [e.path for e in galleries["false-positives"].entries] == ["s/NORMAL/n2.png", "s/NORMAL/n1.png"]


def test_without_labels_highest_lowest_and_nearest():
    galleries = _by_key(choose_galleries(RECORDS, THRESHOLD, None, size=2))
    assert list(galleries) == ["highest", "lowest", "nearest-threshold", "out-of-scope", "errors"]
    assert [e.path for e in galleries["highest"].entries] == [
        "s/NORMAL/n2.png",
        "s/PNEUMONIA/p4.png",
    ]  # not the out-of-scope 0.99
    assert [e.path for e in galleries["lowest"].entries] == ["s/NORMAL/n4.png", "s/NORMAL/n3.png"]
    assert all(e.truth is None for g in galleries.values() for e in g.entries)
