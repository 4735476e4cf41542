"""Finding candidate scans below a folder: recursion, order by path component, and folders that are not scans."""

from xscan.input.walk import find_scans, walk_order


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_recursive_sorted_and_case_insensitive_extensions(tmp_path):
    expected = [
        _touch(tmp_path / "a" / "b" / "deep.TIFF"),
        _touch(tmp_path / "a" / "z.Jpg"),
        _touch(tmp_path / "b.png"),
        _touch(tmp_path / "c.BMP"),
        _touch(tmp_path / "d.jpeg"),
        _touch(tmp_path / "e.tif"),
    ]
    _touch(tmp_path / "notes.txt")
    _touch(tmp_path / "a" / "scan.gif")
    assert find_scans(tmp_path).scans == expected


def test_order_is_by_path_component_not_by_string(tmp_path):
    for name in ["a.png", "9.png", "a/1.png", "B.png", "10.png", "a-b.png"]:
        _touch(tmp_path / name)
    found = [str(path.relative_to(tmp_path)) for path in find_scans(tmp_path).scans]
    # As strings "a-b.png" < "a.png" < "a/1.png"; by component the folder "a" comes before both.
    assert found == ["10.png", "9.png", "B.png", "a/1.png", "a-b.png", "a.png"]
    assert sorted(map(str, find_scans(tmp_path).scans), key=walk_order) == [str(tmp_path / name) for name in found]


def test_folder_named_like_an_image_is_not_a_scan(tmp_path):
    (tmp_path / "x.jpg").mkdir()
    inside = _touch(tmp_path / "x.jpg" / "y.png")
    assert find_scans(tmp_path).scans == [inside]
