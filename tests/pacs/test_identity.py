"""Who xscan is in what it writes: the site's UID root, this install's device UID, the banner's words."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xscan.errors import EXIT_FATAL, EXIT_USAGE
from xscan.pacs.identity import DEFAULT_UID_ROOT, DeviceIdentityError, derived_uid, device_uid, uid_root
from xscan.pacs.studies import verdict_words
from xscan.scoring.results import Row


def test_a_uid_root_is_digits_and_dots_and_the_default_is_todays():
    assert uid_root(None) == uid_root("") == DEFAULT_UID_ROOT == "1.2.826.0.1.3680043.8.498."
    assert uid_root("1.2.826.0.1.3680043.10.543") == "1.2.826.0.1.3680043.10.543."
    for bad in ("1.2.03", "1..2", "1.2.x", "banana", "1." * 25):
        with pytest.raises(ValueError, match="is not a UID root") as refused:
            uid_root(bad)
        assert refused.value.exit_code == EXIT_USAGE
    uid = derived_uid("1.2.826.0.1.3680043.10.543.", ["study", "model"])
    assert uid.startswith("1.2.826.0.1.3680043.10.543.") and len(uid) <= 64
    assert (
        uid
        == derived_uid("1.2.826.0.1.3680043.10.543.", ["study", "model"])
        != derived_uid("1.2.826.0.1.3680043.10.543.", ["study", "other model"])
    )


def test_the_device_uid_is_made_once_per_install_and_kept(tmp_path: Path):
    first = device_uid(tmp_path / "a")
    assert first.startswith("2.25.") and len(first) <= 64
    assert device_uid(tmp_path / "a") == first == (tmp_path / "a" / "device-uid").read_text().strip()
    assert device_uid(tmp_path / "b") != first  # another install


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_state_folder_that_cannot_be_written_is_exit_3(tmp_path: Path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(DeviceIdentityError, match="cannot keep this install's device UID") as failed:
            device_uid(tmp_path / "state")
        assert failed.value.exit_code == EXIT_FATAL
    finally:
        tmp_path.chmod(0o700)


def test_a_state_path_that_is_a_file_is_exit_3(tmp_path: Path):
    (tmp_path / "state").write_text("not a folder")
    with pytest.raises(DeviceIdentityError, match="XSCAN_STATE_DIR") as failed:
        device_uid(tmp_path / "state")
    assert failed.value.exit_code == EXIT_FATAL


def test_verdicts_read_as_words_on_images_and_in_reports():
    from xscan.pacs.images import UNVERIFIED, banner_lines

    assert [verdict_words(label) for label in ("PNEUMONIA", "NORMAL", "OUT_OF_SCOPE")] == [
        "pneumonia",
        "normal",
        "out of scope",
    ]
    lines = banner_lines(Row("a.dcm", 0.93, 0.73, "xscan-cnn-0.1.0-d3d49a7b"))
    assert lines == [
        "xscan: pneumonia, probability of pneumonia 0.930000 (threshold 0.730000)",
        "model xscan-cnn-0.1.0-d3d49a7b; colour: where the pneumonia score rose (class activation map)",
        "UNVERIFIED \u2014 xscan aids a physician; it is not a diagnostic device",
    ]
    assert UNVERIFIED == lines[-1]
    out = banner_lines(Row("b.dcm", 0.987654, 0.73, "m", scope="rotated or inverted (score 0.996)"))
    assert out[0] == "xscan: out of scope, not assessed: rotated or inverted (score 0.996)"
    assert "0.987654" not in " ".join(out)  # no probability for a film the model was not built for
    assert "no heatmap" in out[1]
