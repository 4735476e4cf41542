"""Scoring on a Ray cluster: planned paths in, each batch's rows out, in input order, as `scoring.score_paths` gives them locally.

`score_folder` with `ScoreOptions(ray=True)` (`xscan score --ray`) walks, plans and writes exactly
as a local run; only the source of the rows changes. Ray Data never lists or reads a folder
itself: the paths go to the cluster, CPU tasks decode and preprocess them with the same
`load_scan` (a bad file is an error row, as locally), an actor pool turns each batch into rows
with the same `Scorer` and `score_batch` (the card, its LiteRT file, the scope check's feature
statistics and the site calibration shipped once, through the object store; an actor loads the
LiteRT file with LiteRT alone, never TensorFlow), and the rows come back to the driver in
input order as each batch finishes.

Why a row is never lost or written twice: only the driver writes, and it takes the rows as one
ordered stream in which every row carries its position in the plan; it checks that the positions
arrive as 0, 1, 2, ... and stops with an error otherwise. What Ray retries (a task on a lost
node, a restarted actor) is recomputed before it reaches that stream, never appended to it.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from xscan.errors import RunError, ScanError, UsageError, WeightsError
from xscan.input.dicom.tags import blank_tags
from xscan.input.file_warnings import collected, hand_over, warnings_kept
from xscan.input.limits import MAX_FILE_BYTES
from xscan.model.card import CARD_FILE, ModelCard, default_weights_dir, read_card
from xscan.model.scorer import NO_SCOPE_CHECK, Scorer, load_scorer, model_files
from xscan.scoring.options import DicomOptions, ScoreOptions
from xscan.scoring.pipeline import LoadedScan, load_scan, score_batch
from xscan.scoring.results import Row

if TYPE_CHECKING:
    from xscan.model.site_calibration import LoadedSite

# ---- sizing ----------------------------------------------------------------------------------------

# One core decodes and preprocesses about 80 full-resolution scans a second; one scoring actor (one
# model thread) scores several hundred: an actor keeps up with several cores' decoding, and
# the pool has one per CPUS_PER_SCORER cluster CPUs (at least one), leaving headroom.
CPUS_PER_SCORER = 4
# What Ray reserves for each: a node of C cores with its share of actors (at most C / 4) still runs
# C decoding tasks, so the actors share the cores with the decoders as the model shares them with
# the decoding threads in a local run; and a node with no CPUs (a head started with --num-cpus=0)
# gets neither.
SCORER_CPUS = 0.05
DECODER_CPUS = 1 - SCORER_CPUS
# A decoding task whose worker dies (a lost node, the OOM killer, a crash in a native decoder) is run
# again this many times, then the run stops with the error: Ray Data's default, forever, would hang
# a run on a file that kills its decoder every time (locally the in-flight journal skips such a file).
# Ray 2.60 deprecates passing it (as any other `ray_remote_args`), to be removed in 2.64 with no
# named replacement for max_retries: hence the ray extra's `<2.64`.
DECODE_RETRIES = 3


class ClusterError(RunError):
    """The Ray cluster cannot be used: not reachable, or it failed to start (exit 3)."""


class RayNotInstalled(UsageError):
    """A run on Ray asked for where Ray is not installed (exit 2)."""


@dataclass(frozen=True)
class ModelBundle:
    """The model as it travels to the scoring actors: the files a Scorer loads, the site calibration, and who sent them."""

    files: dict[
        str, bytes
    ]  # by path below the weights folder: the card, the LiteRT file, the feature statistics if used
    scope_check: bool
    site: LoadedSite | None
    xscan_version: str

    @classmethod
    def read(cls, weights_dir: Path, scope_check: bool, site: LoadedSite | None) -> tuple[ModelCard, ModelBundle]:
        """The card of WEIGHTS_DIR and its bundle, each file checked against the card as `load_scorer` checks it."""
        card = read_card(weights_dir)
        files = {}
        for path in [weights_dir / CARD_FILE, *model_files(weights_dir, card, scope_check=scope_check)]:
            try:
                files[path.relative_to(weights_dir).as_posix()] = path.read_bytes()
            except OSError as error:
                raise WeightsError(f"cannot read {path}: {error.strerror or error}") from None
        return card, cls(files, scope_check, site, _installed_version())

    def load(self) -> Scorer:
        """The Scorer of these files (one model thread), loaded through a temporary weights folder."""
        here = _installed_version()
        if self.xscan_version != here:
            raise ClusterError(
                f"this worker has xscan {here}, the driver {self.xscan_version}: install one version everywhere"
            )
        with tempfile.TemporaryDirectory(prefix="xscan-weights-") as folder:
            for name, content in self.files.items():
                (Path(folder) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(folder) / name).write_bytes(content)
            return load_scorer(Path(folder), threads=1, scope_check=self.scope_check, site=self.site)


def _installed_version() -> str:
    """The version of xscan installed here, as pip knows it (importing xscan.__version__ would close an import cycle)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xscan")
    except PackageNotFoundError:
        return "not installed"


class RayScoring:
    """A connection to a Ray cluster with a model in its object store, ready to score paths there."""

    def __init__(self, card: ModelCard, bundle: Any, notes: list[str], scorers: int) -> None:
        self.card = card
        self._bundle = bundle  # an ObjectRef of the ModelBundle: put once, fetched once per actor; kept for restarts
        self.notes = notes  # for the user, as a local Scorer's: e.g. that the card has no out-of-scope check
        self.scorers = scorers

    @classmethod
    def connect(
        cls,
        weights_dir: Path | None = None,
        *,
        address: str | None = None,
        scope_check: bool = True,
        site: LoadedSite | None = None,
        quiet: bool = True,
    ) -> RayScoring:
        """Join the cluster at ADDRESS, else at RAY_ADDRESS, else the one on this machine, else start one here; ship the model.

        The model is WEIGHTS_DIR's (default: the bundled one), with its out-of-scope check unless
        SCOPE_CHECK is off, and the site calibration SITE (checked against the card by the caller).
        A process already connected to Ray (a test session, a notebook) keeps its connection, and
        a connection made here stays open for the next call. QUIET keeps Ray's notes off standard error.
        """
        try:
            import ray
        except ImportError:
            raise RayNotInstalled("--ray needs Ray: pip install 'xscan[ray]'") from None
        card, bundle = ModelBundle.read(Path(weights_dir) if weights_dir else default_weights_dir(), scope_check, site)
        if quiet:
            _quiet_ray_loggers()
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS") or None
            _check_reachable(address)
            try:
                # Workers' own output stays in the cluster's logs (/tmp/ray/session_latest/logs on each
                # node): a file's error is a row, and a failure in a worker comes back here as an exception.
                with _native_output_silenced() if quiet else nullcontext():
                    ray.init(address=address, log_to_driver=False, include_dashboard=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as error:
                raise ClusterError(f"cannot join the Ray cluster at {address or 'this machine'}: {error}") from None
        cpus = int(ray.cluster_resources().get("CPU", 1))
        notes = [NO_SCOPE_CHECK] if scope_check and not card.scope else []
        return cls(card, ray.put(bundle), notes, scorers=max(1, cpus // CPUS_PER_SCORER))

    def score_paths(self, paths: Sequence[Path | str], options: ScoreOptions = ScoreOptions()) -> Iterator[list[Row]]:
        """Score PATHS on the cluster, yielding the rows of each batch in input order, as `scoring.score_paths` does.

        Uses OPTIONS' batch size (also the files one decoding task takes), threshold and DICOM
        options; `workers` does not apply (the cluster's CPUs decide). Every path must be readable by
        every node: a path on a shared file system, or the URI of an object that a pyarrow file
        system reads (s3://bucket/key, gs://..., file:///...), which the worker fetches before
        decoding it; a row's path is the path or URI as given. The warnings each file raised while it
        was read are handed to the calling thread's `file_warnings.collected` list before its batch is yielded.
        """
        if not paths:
            return
        with _rays_own_warnings():
            batches = iter(
                self._dataset(paths, options).iter_batches(
                    batch_size=options.batch_size, batch_format="numpy", prefetch_batches=2
                )
            )
        expected = 0
        while True:
            with _rays_own_warnings():
                batch = next(batches, None)
            if batch is None:
                break
            positions = batch["position"].tolist()
            if positions != list(range(expected, expected + len(positions))):
                raise ClusterError(f"rows came back out of order: expected position {expected}, got {positions[:3]}...")
            expected += len(positions)
            rows = []
            for position, row, scan in zip(positions, batch["row"], batch["scan"], strict=True):
                path = paths[position]  # the name as given: a URI was fetched into a temporary file of another name
                hand_over(replace(warning, path=path) for warning in pickle.loads(scan).warnings)  # a URI stays a URI
                rows.append(replace(pickle.loads(row), path=str(path)))
            yield rows
        if expected != len(paths):
            raise ClusterError(f"the cluster returned {expected} rows for {len(paths)} files")

    def _dataset(self, paths: Sequence[Path | str], options: ScoreOptions) -> Any:
        import pyarrow
        import ray.data

        # The paths go into the object store once, as bytes (a file name need not be UTF-8); each
        # decoding task gets a block of BATCH_SIZE positions and reads its paths from there, so the
        # driver puts nothing per block, and rows return as soon as their batch is scored.
        names = ray.put(pyarrow.array([os.fsencode(path) for path in paths], pyarrow.binary()))
        source = ray.data.range(len(paths), override_num_blocks=math.ceil(len(paths) / options.batch_size))
        context = source.context  # the dataset's own copy: the process's global DataContext is left alone
        context.execution_options.preserve_order = True
        # Ray Data by default holds half of the cluster's resources back, shared out among the operators;
        # with two operators on 2 CPUs that kept one decoding task running where two fit, and the
        # decoders finished 1,080 scans in 11.8 s instead of 6.5 (benchmarks/README.md). The actors hold
        # their CPUs from the start, and the object store's backpressure still bounds memory.
        context.op_resource_reservation_enabled = False
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        decoded = source.map_batches(  # one task a block of positions (batch_size=None: the block is the batch)
            _load_block,
            batch_size=None,
            fn_args=(names,),
            fn_kwargs={"image_size": self.card.image_size, "dicom": options.dicom},
            num_cpus=DECODER_CPUS,
            max_retries=DECODE_RETRIES,
        )
        return decoded.map_batches(
            _ScoringActor,
            batch_size=options.batch_size,
            fn_constructor_args=(self._bundle, options),
            compute=_actor_pool(self.scorers),
            num_cpus=SCORER_CPUS,
        )


def _quiet_ray_loggers() -> None:
    """Python's loggers of Ray and Ray Data show errors only on standard error, where the command's own messages go.

    Ray Data's log file in the session folder still keeps everything.
    """
    import ray.data  # noqa: F401  (configures the "ray.data" logger, whose console handler is lowered below)

    logging.getLogger("ray").setLevel(logging.ERROR)
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler) and isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.ERROR)


@contextmanager
def _native_output_silenced() -> Iterator[None]:
    """Within, Ray starts without a note on this process's standard error, and its C++ core writes none there later either.

    Ray's C++ core logs a warning on every actor pool that Ray Data starts (about Ray Data's own
    constructor arguments): its level is set to fatal (RAY_BACKEND_LOG_LEVEL, when set, wins), and
    the note that it was set, written as the core starts, goes to /dev/null with the rest of the
    start-up's native output; the cluster's own processes, started meanwhile, write to their log
    files. Errors from `ray.init` come as exceptions.
    """
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def _rays_own_warnings() -> Iterator[None]:
    """Warnings raised on this thread within, while Ray Data runs, are the run's, not a file's.

    Ray Data raises a DeprecationWarning for each of its own deprecated settings whenever it copies
    its context, and a RayDeprecationWarning for DECODE_RETRIES: deprecations are dropped, as
    Python's default filters drop them; any other warning is handed on.
    """
    with collected() as raised:
        yield
    hand_over(warning for warning in raised if not warning.category.endswith("DeprecationWarning"))


def _check_reachable(address: str | None, timeout: float = 10.0) -> None:
    """Fail fast on a cluster address nobody answers at: Ray itself retries for minutes."""
    if not address or "://" in address or address == "auto" or ":" not in address:
        return  # a local cluster, Ray Client (ray://) or the address of the cluster on this machine: Ray checks these
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as error:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address}: {getattr(error, 'strerror', None) or error}"
        ) from None


def _actor_pool(size: int) -> Any:
    from ray.data import ActorPoolStrategy

    return ActorPoolStrategy(size=size)


# ---- on the workers ------------------------------------------------------------------------------


def _load_block(
    block: dict[str, np.ndarray], names: Any, image_size: int, dicom: DicomOptions
) -> dict[str, np.ndarray]:
    """`load_scan` of the files at a block of positions in NAMES: model inputs (zeros where none) and each LoadedScan without its input.

    Warnings raised while a file is read are kept with it (`file_warnings`), as in a local run,
    and travel back to the driver with it.
    """
    import ray

    names = ray.get(names)  # an Arrow array in the node's object store: read in place, not copied
    with warnings_kept(), tempfile.TemporaryDirectory(prefix="xscan-objects-") as staging:
        loaded = [
            _load(os.fsdecode(names[position].as_py()), image_size, dicom, Path(staging) / str(index))
            for index, position in enumerate(block["id"])
        ]
    model_inputs = np.zeros((len(loaded), image_size, image_size, 1), np.float32)
    for index, scan in enumerate(loaded):
        if scan.model_input is not None:
            model_inputs[index] = scan.model_input
    return {
        "position": block["id"],
        "model_input": model_inputs,  # a tensor column, moved as one array
        "scorable": np.array([scan.model_input is not None for scan in loaded], dtype=bool),
        "scan": np.array([pickle.dumps(replace(scan, model_input=None)) for scan in loaded], dtype=object),
    }


def _load(name: str, image_size: int, dicom: DicomOptions, staging: Path) -> LoadedScan:
    """`load_scan` of a path, or of an object storage URI (s3://, gs://, file://, ...) fetched into STAGING first."""
    if "://" not in name:
        return load_scan(Path(name), image_size, dicom)
    staging.mkdir()
    local = staging / (PurePosixPath(urlparse(name).path).name or "object")  # the name's suffix chooses the decoder
    try:
        _fetch(name, local)
    except ScanError as error:
        return LoadedScan(local, None, str(error), blank_tags(dicom.tags))
    return load_scan(local, image_size, dicom)


def _fetch(uri: str, local: Path) -> None:
    """Copy the object at URI to LOCAL through a pyarrow file system; a missing, odd or huge object is a ScanError."""
    import pyarrow
    from pyarrow import fs

    try:
        filesystem, key = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(key)
        if info.type != fs.FileType.File:
            raise ScanError(
                "cannot read file: no such object" if info.type == fs.FileType.NotFound else "not a regular file"
            )
        if info.size > MAX_FILE_BYTES:
            raise ScanError(f"file too large ({info.size >> 20} MiB; limit {MAX_FILE_BYTES >> 20} MiB)")
        with filesystem.open_input_stream(key) as source, open(local, "wb") as target:
            shutil.copyfileobj(source, target)
    except (OSError, pyarrow.ArrowException) as error:
        raise ScanError(f"cannot read file: {error}") from None


class _ScoringActor:
    """One Scorer per actor, loaded once from the bundle in the object store; each batch becomes rows by `score_batch`."""

    def __init__(self, bundle: Any, options: ScoreOptions) -> None:
        import ray

        self._scorer = ray.get(bundle).load()
        self._threshold = options.threshold_or(self._scorer.threshold)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        loaded = [
            replace(pickle.loads(scan), model_input=model_input) if scorable else pickle.loads(scan)
            for scan, model_input, scorable in zip(batch["scan"], batch["model_input"], batch["scorable"], strict=True)
        ]
        rows = score_batch(loaded, self._scorer, self._threshold)
        return {
            "position": batch["position"],
            "row": np.array([pickle.dumps(row) for row in rows], dtype=object),
            "scan": batch["scan"],  # for its warnings, told by the driver
        }
