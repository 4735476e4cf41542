from xscan.walk import find_scans


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


def test_same_order_on_every_run(tmp_path):
    for name in ["9.png", "10.png", "a/1.png", "B.png"]:
        _touch(tmp_path / name)
    assert find_scans(tmp_path).scans == find_scans(tmp_path).scans


def test_folder_named_like_an_image_is_not_a_scan(tmp_path):
    (tmp_path / "x.jpg").mkdir()
    inside = _touch(tmp_path / "x.jpg" / "y.png")
    assert find_scans(tmp_path).scans == [inside]
