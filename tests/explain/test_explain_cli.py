"""`xscan explain` end to end on real scans.

One PNG per input, explain.csv as score's rows plus the overlay, errors, exit codes.
"""

import csv
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from support.data import real_scans
from typer.testing import CliRunner

from xscan.cli import app
from xscan.errors import EXIT_OK, EXIT_SOME_FAILED, EXIT_TERMINATED, EXIT_USAGE
from xscan.explain.overlay import BAR_PANEL, LINE_HEIGHT
from xscan.scoring.results import COLUMNS, FINGERPRINT_COLUMNS, read_table

REPO = Path(__file__).resolve().parents[2]
CAPTION_BAND = 3 * LINE_HEIGHT + 12  # three caption lines and a margin


def _records(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    """One run over 3 + 3 real scans in class folders and a truncated JPEG, with score's CSV of the same folder."""
    base = tmp_path_factory.mktemp("explain")
    folder = base / "scans"
    for label in ("NORMAL", "PNEUMONIA"):
        (folder / label).mkdir(parents=True)
        for path in real_scans(label, 3):
            shutil.copy(path, folder / label / path.name)
    jpeg = real_scans("PNEUMONIA", 1)[0].read_bytes()
    (folder / "cut.jpeg").write_bytes(jpeg[: len(jpeg) // 2])
    result = CliRunner().invoke(
        app, ["explain", str(folder), "-o", str(base / "out"), "--log-file", str(base / "explain.log")]
    )
    scored = CliRunner().invoke(app, ["score", str(folder), "-o", str(base / "scores.csv"), "--quiet"])
    assert scored.exit_code == EXIT_SOME_FAILED, scored.output
    # The score rows with their files' identities, which the state file beside the CSV holds.
    return folder, base / "out", result, read_table(base / "scores.csv").with_state()


def test_one_overlay_per_scan_below_the_output_folder(explained):
    folder, out, result, _ = explained
    assert result.exit_code == EXIT_SOME_FAILED, result.output
    assert "drawn 6, failed 1" in result.stderr  # a crash would exit 1 too, but never print the summary
    expected = {
        Path(label) / (p.name + ".png") for label in ("NORMAL", "PNEUMONIA") for p in (folder / label).iterdir()
    }
    assert {p.relative_to(out) for p in out.rglob("*.png")} == expected


def test_the_log_file_has_a_line_per_failed_file_and_a_summary(explained):
    folder, out, _, _ = explained
    lines = (out.parent / "explain.log").read_text().splitlines()
    assert [line.split(" ", 2)[1] for line in lines] == ["error", "run"]
    assert str(folder / "cut.jpeg") in lines[0]
    assert "drawn=6 failed=1" in lines[1] and lines[1].endswith("exit=4")


def test_explain_paths_is_the_command_as_one_quiet_library_call(tmp_path, scorer, capfd):
    from xscan import ExplainOptions, explain_paths
    from xscan.scoring.run import Planned, RowsWritten

    for path in real_scans("NORMAL", 2):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "empty.png").write_bytes(b"")
    events = []
    summary = explain_paths(
        [tmp_path], tmp_path / "out", ExplainOptions(long_side=128), scorer=scorer, on_event=events.append
    )
    assert (summary.drawn, summary.failed, summary.exit_code) == (2, 1, EXIT_SOME_FAILED)
    assert capfd.readouterr() == ("", "")
    assert events[0] == Planned(to_score=3, unchanged=0)
    assert sorted(
        Path(row.path).name for event in events[1:] if isinstance(event, RowsWritten) for row in event.rows
    ) == sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert len(list((tmp_path / "out").glob("*.png"))) == 2


def test_explain_csv_is_scores_rows_plus_the_overlay(explained):
    _, out, _, scores = explained
    records = _records(out / "explain.csv")
    assert list(records[0]) == [*COLUMNS, *FINGERPRINT_COLUMNS, "overlay"]
    shared = [*COLUMNS, *FINGERPRINT_COLUMNS]
    assert [{k: r[k] for k in shared} for r in records] == [
        {k: r[k] for k in shared} for r in scores
    ]  # the numbers score writes
    for record in records:
        if record["error"]:
            assert record["overlay"] == "" and record["probability"] == ""
        else:
            assert (out / record["overlay"]).is_file()


def _assert_drawn_at(overlay_path: Path, source: Path, long_side: int) -> None:
    """The overlay holds the scan with LONG_SIDE pixels on its longer side.

    The bar panel is right of it and the caption below.
    """
    height, width = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE).shape
    overlay = cv2.imread(str(overlay_path))
    assert overlay.shape[1] - BAR_PANEL == round(long_side * width / max(height, width))
    assert overlay.shape[0] - CAPTION_BAND == round(long_side * height / max(height, width))


def test_each_overlay_is_the_scan_at_its_own_proportions(explained):
    _, out, _, _ = explained
    drawn = [record for record in _records(out / "explain.csv") if not record["error"]]
    assert len(drawn) == 6
    for record in drawn:
        _assert_drawn_at(out / record["overlay"], Path(record["path"]), 512)


def test_files_by_name_and_the_size_option(tmp_path):
    first, second = real_scans("PNEUMONIA", 2)
    result = CliRunner().invoke(app, ["explain", str(first), str(second), "-o", str(tmp_path / "out"), "--size", "256"])
    assert result.exit_code == EXIT_OK, result.output
    for path in (first, second):
        _assert_drawn_at(tmp_path / "out" / (path.name + ".png"), path, 256)


def test_two_scans_that_would_share_an_overlay_are_a_usage_error(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(real_scans("NORMAL", 1)[0], tmp_path / name / "scan.jpeg")
    result = CliRunner().invoke(app, ["explain", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "out")])
    assert result.exit_code == EXIT_USAGE
    assert "would both be drawn to scan.jpeg.png" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_input_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["explain", str(tmp_path / "nope"), "-o", str(tmp_path / "out")])
    assert result.exit_code == EXIT_USAGE and "does not exist" in result.stderr


def test_exit_codes_as_the_shell_sees_them(tmp_path):
    good = real_scans("NORMAL", 1)[0]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "xscan.cli", "explain", "-o", str(tmp_path / "out")]
    # Exit 0 is test_files_by_name_and_the_size_option's; one real process shows 4 and no traceback.
    failed = subprocess.run([*run, str(good), str(broken)], capture_output=True, text=True, env=env, timeout=300)
    assert failed.returncode == EXIT_SOME_FAILED and "Traceback" not in failed.stderr
    assert "drawn 1, failed 1" in failed.stderr


def test_sigterm_ends_explain_with_143_and_a_log_line(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for path in real_scans("PNEUMONIA", 200):
        shutil.copy(path, folder / path.name)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    log = tmp_path / "explain.log"
    command = [
        sys.executable,
        "-m",
        "xscan.cli",
        "explain",
        str(folder),
        "-o",
        str(tmp_path / "out"),
        "--log-file",
        str(log),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    csv_file = tmp_path / "out" / "explain.csv"
    try:
        for _ in range(600):  # until the first rows are written (the model loaded and drawing began), at most a minute
            if csv_file.exists() and csv_file.read_text().count("\n") > 1:
                break
            try:
                process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            break
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == EXIT_TERMINATED, stderr
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    assert "fatal terminated by SIGTERM (exit 143)" in log.read_text()
