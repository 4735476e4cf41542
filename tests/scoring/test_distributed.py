"""`xscan score --ray` on a local Ray cluster of 2 CPUs: the same rows as a local run, the same resume; else no Ray.

One cluster serves the whole session (started by the first test that needs it). Without Ray
installed these tests are skipped, unless XSCAN_REQUIRE_RAY=1 (set by .ci/run), where its absence
is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.data import DATA, FULLRES, needs_data, real_scans, validation_scans
from support.dicom import PYDICOM_FILES, write_dicom
from support.fuzz import seeds, write_corpus
from support.hostile import EXPECTED_ERRORS, NOT_UTF8, build_hostile_folder
from support.processes import descendants
from support.site import site_sample
from typer.testing import CliRunner

from xscan.cli import app
from xscan.errors import EXIT_FATAL, EXIT_OK, EXIT_SOME_FAILED
from xscan.input.walk import find_scans
from xscan.model.card import LITERT_FILE, default_weights_dir, read_card
from xscan.model.classes import OUT_OF_SCOPE
from xscan.model.site_calibration import load_site
from xscan.reporting.labels import FolderLabels
from xscan.scoring.options import DicomOptions, ScoreOptions
from xscan.scoring.results import RUN_COLUMN, read_table
from xscan.scoring.run import RowsWritten, Warned, score_folder
from xscan.site.calibrate import fit_site_calibration, select_rows

# Ray Data reads its own deprecated settings when it copies its context: not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
    pytest.mark.slow,
    pytest.mark.real_component,  # a local Ray cluster
]

REPO = Path(__file__).resolve().parents[2]
ACTOR_NAME = "ScoringActor"  # in the process title of each scoring actor: ray::MapWorker(MapBatches(ScoringActor))


def _require_ray():
    try:
        import ray
    except ImportError:
        if os.environ.get("XSCAN_REQUIRE_RAY") == "1":
            raise
        pytest.skip("Ray is not installed (pip install '.[ray]')")
    return ray


@pytest.fixture(scope="session")
def ray_cluster():
    """A local cluster of 2 CPUs for the session; its address, for subprocesses to join through RAY_ADDRESS."""
    ray = _require_ray()
    context = ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


def _score(folder: Path, out: Path, *options: str, quiet: bool = True):
    return CliRunner().invoke(
        app, ["score", str(folder), "-o", str(out), *(["--quiet"] if quiet else []), *map(str, options)]
    )


def _said(stderr: str, out: Path) -> list[str]:
    """What a run into OUT printed, with its duration and rate left out and OUT as `OUT`."""
    return [
        re.sub(r" in [\d.]+ s \([\d.]+ images/s\)", "", line).replace(str(out), "OUT") for line in stderr.splitlines()
    ]


def _records(out: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The CSV's columns, and its rows with what the state file beside it holds of each (identity, run, statistics)."""
    table = read_table(out)
    return list(table.columns), table.with_state()


def assert_same_rows(distributed: Path, local: Path, ignore: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """The two results files have the same columns and rows in order, probabilities equal to 1e-6; IGNORE's cells aside.

    Not byte for byte: a scan's logit moves by up to about 1e-9 with the other scans of its
    network call, which now and then flips the sixth decimal.
    """
    local_columns, local_rows = _records(local)
    ray_columns, ray_rows = _records(distributed)
    assert ray_columns == local_columns
    assert [row["path"] for row in ray_rows] == [row["path"] for row in local_rows]
    for mine, theirs in zip(ray_rows, local_rows, strict=True):
        skipped = ("probability", *ignore)
        assert {k: v for k, v in mine.items() if k not in skipped} == {
            k: v for k, v in theirs.items() if k not in skipped
        }
        if theirs["probability"]:
            assert abs(float(mine["probability"]) - float(theirs["probability"])) <= 1.0000001e-6, mine["path"]
        else:
            assert mine["probability"] == ""
    return ray_rows


def _logged(log: Path) -> list[str]:
    """The run log's error and warning entries, without their timestamps."""
    entries = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    return [entry for entry in entries if entry.startswith(("error ", "warning "))]


def _out_of_scope_films(folder: Path) -> None:
    """A noise picture and a chest film turned on its side: scans the model was not built for."""
    folder.mkdir()
    rng = np.random.default_rng(16)
    cv2.imwrite(str(folder / "noise.png"), np.clip(rng.normal(128, 60, (320, 320)), 0, 255).astype(np.uint8))
    film = cv2.imread(str(real_scans("NORMAL", 1, FULLRES)[0]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(folder / "rotated.png"), cv2.rotate(film, cv2.ROTATE_90_CLOCKWISE))


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """Training scans, full-resolution originals, DICOMs (a frontal, a CT to skip), hostile and out-of-scope files."""
    root = tmp_path_factory.mktemp("mixed") / "scans"
    (root / "hostile").mkdir(parents=True)
    build_hostile_folder(root / "hostile")
    for label in ("NORMAL", "PNEUMONIA"):
        (root / label).mkdir()
        for path in real_scans(label, 5) + real_scans(label, 2, FULLRES):
            shutil.copy(path, root / label / path.name)
    grey = cv2.normalize(
        cv2.imread(str(real_scans("PNEUMONIA", 1, FULLRES)[0]), cv2.IMREAD_GRAYSCALE), None, 0, 255, cv2.NORM_MINMAX
    )
    (root / "dicom").mkdir()
    write_dicom(root / "dicom" / "frontal.dcm", grey)
    write_dicom(root / "dicom" / "ct.dcm", grey, Modality="CT", AccessionNumber="ACC-0099")
    _out_of_scope_films(root / "odd")
    return root


def test_rows_on_ray_equal_the_local_run(ray_cluster, mixed_folder, tmp_path):
    local, distributed = tmp_path / "local.csv", tmp_path / "ray.csv"
    options = ("--dicom-tags", "AccessionNumber")
    by_local = _score(mixed_folder, local, *options, "--log-file", tmp_path / "local.log", quiet=False)
    assert by_local.exit_code == EXIT_SOME_FAILED
    result = _score(
        mixed_folder,
        distributed,
        *options,
        "--log-file",
        tmp_path / "ray.log",
        "--ray",
        "--batch-size",
        "5",
        quiet=False,
    )
    assert result.exit_code == EXIT_SOME_FAILED, result.output
    assert _said(result.stderr, distributed) == _said(
        by_local.stderr, local
    )  # the same notes and summary, nothing of Ray's
    ray_rows = assert_same_rows(distributed, local)
    assert "AccessionNumber" in ray_rows[0]
    assert [row["path"] for row in ray_rows] == [str(path) for path in find_scans(mixed_folder).scans]
    errors = {Path(row["path"]).name: row["error"] for row in ray_rows if row["error"]}
    assert errors == EXPECTED_ERRORS | {"ct.dcm": "skipped: Modality CT, not a radiograph"}
    out_of_scope = {Path(row["path"]).name: row["scope"] for row in ray_rows if row["label"] == OUT_OF_SCOPE}
    assert {"noise.png", "rotated.png"} <= set(out_of_scope) and all(out_of_scope.values())  # with the reason and score
    assert (
        os.path.join(os.fsencode(mixed_folder / "hostile"), NOT_UTF8) in distributed.read_bytes()
    )  # the name's own bytes
    assert _logged(tmp_path / "ray.log") == _logged(tmp_path / "local.log")


@pytest.fixture
def site_file(tmp_path) -> Path:
    """A site calibration for the bundled model."""
    site = fit_site_calibration(select_rows(site_sample(30), FolderLabels()))
    path = tmp_path / "site.json"
    path.write_text(type(site)(**{**site.__dict__, "base_model": read_card(default_weights_dir()).model_id}).to_json())
    return path


@needs_data
def test_fuzzed_files_give_the_same_rows_on_ray_as_locally(ray_cluster, tmp_path):
    folder = tmp_path / "fuzzed"
    write_corpus(folder, 40, seed=24, sources=seeds(DATA))
    local, distributed = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert _score(folder, local).exit_code == EXIT_SOME_FAILED
    assert _score(folder, distributed, "--ray").exit_code == EXIT_SOME_FAILED
    rows = assert_same_rows(distributed, local)
    assert len(rows) == 40 and any(row["error"] for row in rows) and any(row["probability"] for row in rows)


def test_score_folder_on_ray_with_a_site_calibration_and_no_scope_check_equals_the_local_run(
    ray_cluster, site_file, tmp_path
):
    folder = tmp_path / "scans"
    folder.mkdir()
    for path in validation_scans("NORMAL", 3) + validation_scans("PNEUMONIA", 3):
        shutil.copy(path, folder / path.name)
    _out_of_scope_films(folder / "odd")  # no scope check: these get NORMAL or PNEUMONIA
    # Not a radiograph, so skipped by the DICOM filter; without it, pydicom warns while reading it, and it fails to
    # decode.
    shutil.copy(PYDICOM_FILES / "badVR.dcm", folder / "padded.dcm")
    asked = ScoreOptions(calibration=site_file, scope_check=False, dicom=DicomOptions(frontal_only=False), batch_size=4)
    runs = {}
    for name, options in (("local", asked), ("ray", replace(asked, ray=True))):
        events = []
        summary = score_folder(folder, tmp_path / f"{name}.csv", options, on_event=events.append)
        runs[name] = summary, [event for event in events if not isinstance(event, RowsWritten)]
    rows = assert_same_rows(tmp_path / "ray.csv", tmp_path / "local.csv")
    assert {row["model"] for row in rows} == {
        load_site(site_file, read_card(default_weights_dir()).model_id).model_id()
    }
    assert not any(row["scope"] or row["label"] == OUT_OF_SCOPE for row in rows) and len(rows) == 9
    (local, local_events), (ray, ray_events) = runs["local"], runs["ray"]
    assert ray_events == local_events  # the plan, and each warning with its file's path, in the same order
    assert [event.warning.path for event in ray_events if isinstance(event, Warned)] == [folder / "padded.dcm"]
    assert (ray.scored, ray.failed, ray.skipped, ray.exit_code, ray.workers) == (8, 1, 0, EXIT_SOME_FAILED, 0)
    assert (local.scored, local.failed, local.skipped, local.exit_code) == (8, 1, 0, EXIT_SOME_FAILED)


def test_rows_come_back_batch_by_batch_in_input_order(ray_cluster, scorer, tmp_path):
    from xscan.scoring.pipeline import score_paths
    from xscan.scoring.ray_driver import RayScoring

    broken, cut = tmp_path / "broken.jpg", tmp_path / "cut.jpeg"
    broken.write_bytes(b"not an image")
    cut.write_bytes(real_scans("PNEUMONIA", 1)[0].read_bytes()[:3000])
    paths = real_scans("NORMAL", 3) + [broken] + real_scans("PNEUMONIA", 2, FULLRES) + [cut, tmp_path / "gone.jpeg"]
    batches = list(RayScoring.connect().score_paths(paths, ScoreOptions(batch_size=3)))
    assert [len(batch) for batch in batches] == [3, 3, 2]
    rows = [row for batch in batches for row in batch]
    local = [row for batch in score_paths(paths, scorer) for row in batch]
    assert [row.path for row in rows] == [str(path) for path in paths]
    assert [row.error for row in rows] == [row.error for row in local]
    assert rows[3].probability is None and rows[3].error != ""
    assert rows[6].error == "truncated JPEG: no end-of-image marker" and rows[7].error.startswith("cannot read file")
    assert [row.trailing_columns.keys() for row in rows] == [row.trailing_columns.keys() for row in local]
    assert (
        max(abs(a.probability - b.probability) for a, b in zip(rows, local, strict=True) if b.probability is not None)
        < 1e-6
    )


def _process_titles() -> dict[int, str]:
    """Command line of every process of this machine that this test's user can read, by pid."""
    titles = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                titles[int(entry)] = (
                    Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:
                continue
    return titles


@pytest.fixture(scope="module")
def fullres_folder(tmp_path_factory) -> Path:
    """80 full-resolution scans (links to the originals): slow enough to decode that a run can be killed midway."""
    root = tmp_path_factory.mktemp("fullres") / "scans"
    root.mkdir()
    sources = real_scans("NORMAL", 40, FULLRES) + real_scans("PNEUMONIA", 40, FULLRES)
    for index, source in enumerate(sources):
        (root / f"{index:03d}-{source.name}").symlink_to(source)
    return root


def test_a_lost_scoring_worker_is_retried_without_losing_or_repeating_rows(ray_cluster, fullres_folder, scorer):
    from xscan.scoring.pipeline import score_paths
    from xscan.scoring.ray_driver import RayScoring

    paths = find_scans(fullres_folder).scans[:40]
    rows, killed, rows_before_kill = [], [], 0
    for batch in RayScoring.connect().score_paths(paths, ScoreOptions(batch_size=2)):
        rows.extend(batch)
        if not killed:  # the scoring actor has answered once: kill it, with most batches still to score
            titles = _process_titles()
            killed = [pid for pid in descendants(os.getpid()) if ACTOR_NAME in titles.get(pid, "")]
            assert killed, "no scoring actor found among this test's processes"
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            rows_before_kill = len(rows)
    local = [row for batch in score_paths(paths, scorer) for row in batch]
    assert rows_before_kill < len(paths)
    assert [row.path for row in rows] == [row.path for row in local]  # none lost, none twice, in order
    assert [row.scope for row in rows] == [row.scope for row in local]
    assert max(abs(a.probability - b.probability) for a, b in zip(rows, local, strict=True)) < 1e-6


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", "from xscan.cli import app; app()", *args],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _rows_written(out: Path) -> int:
    try:
        return out.read_bytes().count(b"\r\n") - 1
    except FileNotFoundError:
        return -1


def test_killed_ray_run_then_rerun_matches_an_uninterrupted_local_run(ray_cluster, fullres_folder, tmp_path):
    reference, out = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert _score(fullres_folder, reference).exit_code == EXIT_OK
    command = ("score", str(fullres_folder), "-o", str(out), "--ray", "--batch-size", "2", "-q")
    joined = {"RAY_ADDRESS": ray_cluster}  # the session's cluster: this also checks that RAY_ADDRESS is obeyed
    process = _cli(*command, env=joined)
    deadline = time.monotonic() + 300
    while _rows_written(out) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, process.stderr.read().decode()
    written = _rows_written(out)
    assert 3 <= written < 80, written  # killed mid-run, with rows on disk
    with open(out, "ab") as stream:  # as if the kill had also cut a write short
        stream.write(reference.read_bytes().splitlines(keepends=True)[written + 1][:25])
    rerun = _cli(*command, env=joined)
    _, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == EXIT_OK, stderr.decode()
    assert stderr == b""  # -q: nothing of Ray's either, on the process's own standard error
    # Every file once, in walk order, with the local run's values; the rows scored after the kill are of run 2.
    rows = assert_same_rows(out, reference, ignore=(RUN_COLUMN,))
    assert len(rows) == 80 and not (tmp_path / "ray.csv.tmp").exists()
    assert {row[RUN_COLUMN] for row in rows} == {"1", "2"}


def test_an_unreachable_cluster_is_a_fatal_error_at_once(tmp_path):
    """--ray-address alone (it implies --ray) names the cluster; RAY_ADDRESS does in the test above."""
    _require_ray()
    nobody = "127.0.0.1:9"  # the discard port: nothing listens there
    process = _cli(
        "score", str(REPO / "tests" / "data" / "scans"), "-o", str(tmp_path / "r.csv"), "--ray-address", nobody
    )
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_FATAL
    assert f"cannot reach the Ray cluster at {nobody}" in stderr.decode()
    assert "Traceback" not in stderr.decode()


def test_weights_that_do_not_match_their_card_are_fatal_before_the_cluster_is_joined(tmp_path):
    _require_ray()
    weights = Path(shutil.copytree(default_weights_dir(), tmp_path / "weights"))
    content = (weights / LITERT_FILE).read_bytes()  # the network the actors would run
    (weights / LITERT_FILE).write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    result = _score(
        REPO / "tests" / "data" / "scans", tmp_path / "r.csv", "--weights", weights, "--ray-address", "127.0.0.1:9"
    )
    assert result.exit_code == EXIT_FATAL
    assert (
        "does not match its model card" in result.stderr
    )  # not the unreachable cluster: the weights are checked first


def test_ray_options_are_checked_when_made(scorer, tmp_path):
    with pytest.raises(ValueError, match="ray=True"):
        ScoreOptions(ray_address="head:6379")
    with pytest.raises(ValueError, match="not both"):
        score_folder(REPO / "tests" / "data" / "scans", tmp_path / "r.csv", ScoreOptions(ray=True), scorer=scorer)
    assert not (tmp_path / "r.csv").exists()


RAY_MODULES_AFTER = """
import json, sys
from typer.testing import CliRunner
from xscan.cli import app
codes = [CliRunner().invoke(app, args).exit_code for args in (["--help"], ["score", "--help"], sys.argv[1:])]
print(json.dumps([codes, sorted(name for name in sys.modules if name == "ray" or name.startswith("ray."))]))
"""


def _probe(*args: str, env: dict[str, str] | None = None) -> tuple[list[int], list[str]]:
    """Exit codes of `xscan --help`, `xscan score --help`, `xscan ARGS` in a new interpreter; the Ray modules loaded."""
    done = subprocess.run(
        [sys.executable, "-c", RAY_MODULES_AFTER, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_ray_option_ray_is_not_imported(tmp_path):
    out = tmp_path / "r.csv"
    codes, modules = _probe("score", str(REPO / "tests" / "data" / "scans"), "-o", str(out), "-q")
    assert codes == [EXIT_OK] * 3 and modules == []
    assert len(out.read_text().splitlines()) == 9  # it did score: the header and 8 rows


def test_the_probe_sees_ray_when_it_is_used(tmp_path):
    """The check above can fail: with --ray (here failing at once on an unreachable cluster) the probe finds Ray."""
    _require_ray()
    args = ("score", str(REPO / "tests" / "data" / "scans"), "-o", str(tmp_path / "r.csv"), "-q", "--ray")
    codes, modules = _probe(*args, env={"RAY_ADDRESS": "127.0.0.1:9"})
    assert codes == [EXIT_OK, EXIT_OK, EXIT_FATAL] and "ray" in modules
