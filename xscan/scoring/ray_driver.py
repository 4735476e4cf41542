"""Scoring on a Ray cluster, the driver's side: planned paths out, each batch's rows back in input order.

`score_folder` with `ScoreOptions(ray=True)` (`xscan score --ray`) walks, plans and writes exactly
as a local run; only the source of the rows changes. Ray Data never lists or reads a folder
itself: the paths go to the cluster, and the workers (`ray_worker`) decode, preprocess and score
them with the same `load_scan`, `Scorer` and `score_batch` as a local run (the card, its LiteRT
file, the scope check's feature statistics and the site calibration shipped once, through the
object store); the rows come back to the driver as columns, in input order, as each batch finishes.

Why a row is never lost or written twice: only the driver writes, and it takes the rows as one
ordered stream in which every row carries its position in the plan; it checks that the positions
arrive as 0, 1, 2, ... and stops with an error otherwise. What Ray retries (a task on a lost
node, a restarted actor) is recomputed before it reaches that stream, never appended to it.
Sizing and its measurements: docs/scale-out.md.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xscan.errors import UsageError
from xscan.input.file_warnings import collected, hand_over
from xscan.input.native_stderr import native_stderr_discarded
from xscan.model.card import ModelCard, default_weights_dir
from xscan.model.scorer import NO_SCOPE_CHECK
from xscan.scoring.options import ScoreOptions
from xscan.scoring.ray_worker import (
    POSITION,
    WARNINGS,
    ClusterError,
    ModelBundle,
    ScoringActor,
    load_block,
    rows_from_columns,
    warnings_of,
)
from xscan.scoring.results import Row

if TYPE_CHECKING:
    from xscan.model.site_calibration import LoadedSite

__all__ = ["ClusterError", "RayNotInstalled", "RayScoring"]

# ---- sizing (docs/scale-out.md) --------------------------------------------------------------------

# The pool has one scoring actor per CPUS_PER_SCORER cluster CPUs (at least one): an actor (one model
# thread) keeps up with several cores' decoding.
CPUS_PER_SCORER = 4
# What Ray reserves for each: a node of C cores with its share of actors still runs C decoding tasks,
# and a node with no CPUs (a head started with --num-cpus=0) gets neither.
SCORER_CPUS = 0.05
DECODER_CPUS = 1 - SCORER_CPUS
# A decoding task whose worker dies (a lost node, the OOM killer, a crash in a native decoder) is run
# again this many times, then the run stops with the error: Ray Data's default, forever, would hang
# a run on a file that kills its decoder every time. Ray 2.60 deprecates passing it, to be removed in
# 2.64 with no named replacement: hence the ray extra's `<2.64`.
DECODE_RETRIES = 3


class RayNotInstalled(UsageError):
    """A run on Ray asked for where Ray is not installed (exit 2)."""


class RayScoring:
    """A connection to a Ray cluster with a model in its object store, ready to score paths there."""

    def __init__(self, card: ModelCard, bundle: Any, notes: list[str], scorers: int) -> None:
        """Hold a connection; `connect` makes one.

        Args:
            card: The model's card.
            bundle: An ObjectRef of the ModelBundle in the cluster's object store.
            notes: Notes for the user, as a local Scorer's.
            scorers: The size of the pool of scoring actors.
        """
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
        """Join a Ray cluster and ship the model to its object store.

        The cluster is the one at `address`, else at RAY_ADDRESS, else the one on this machine, else one
        started here. A process already connected to Ray (a test session, a notebook) keeps its
        connection, and a connection made here stays open for the next call.

        Args:
            weights_dir: the weights folder (default: the bundled one).
            address: the cluster's address.
            scope_check: whether rows get the out-of-scope check.
            site: the site calibration, already checked against the card by the caller.
            quiet: keep Ray's notes off standard error.

        Returns:
            The connection.

        Raises:
            RayNotInstalled: Ray is not installed.
            WeightsError: the weights do not load (checked before the cluster is joined).
            ClusterError: the cluster cannot be reached or started.
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
                with _ray_core_quiet() if quiet else nullcontext():
                    ray.init(address=address, log_to_driver=False, include_dashboard=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as error:
                raise ClusterError(f"cannot join the Ray cluster at {address or 'this machine'}: {error}") from None
        cpus = int(ray.cluster_resources().get("CPU", 1))
        notes = [NO_SCOPE_CHECK] if scope_check and not card.scope else []
        return cls(card, ray.put(bundle), notes, scorers=max(1, cpus // CPUS_PER_SCORER))

    def score_paths(self, paths: Sequence[Path], options: ScoreOptions = ScoreOptions()) -> Iterator[list[Row]]:
        """Score files on the cluster, yielding the rows of each batch in input order, as `scoring.score_paths` does.

        Every path must be readable at the same path by every node (a shared file system). The
        warnings each file raised while it was read are handed to the calling thread's
        `file_warnings.collected` list before its batch is yielded.

        Args:
            paths: the planned files.
            options: the batch size (also the files one decoding task takes), threshold and DICOM
                options; `workers` does not apply (the cluster's CPUs decide).

        Yields:
            The rows of each batch, for the results writer.

        Raises:
            ClusterError: rows came back out of order, or too few.
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
            positions = batch[POSITION].tolist()
            if positions != list(range(expected, expected + len(positions))):
                raise ClusterError(f"rows came back out of order: expected position {expected}, got {positions[:3]}...")
            expected += len(positions)
            yield _rows_of(batch, [paths[position] for position in positions])
        if expected != len(paths):
            raise ClusterError(f"the cluster returned {expected} rows for {len(paths)} files")

    def _dataset(self, paths: Sequence[Path], options: ScoreOptions) -> Any:
        import pyarrow
        import ray.data

        # The paths go into the object store once, as bytes (a file name need not be UTF-8); each
        # decoding task gets a block of BATCH_SIZE positions and reads its paths from there, so the
        # driver puts nothing per block, and rows return as soon as their batch is scored.
        names = ray.put(pyarrow.array([os.fsencode(path) for path in paths], pyarrow.binary()))
        source = ray.data.range(len(paths), override_num_blocks=math.ceil(len(paths) / options.batch_size))
        context = source.context  # the dataset's own copy: the process's global DataContext is left alone
        context.execution_options.preserve_order = True
        # Ray Data by default holds half of the cluster's resources back, shared out among the operators,
        # which kept one decoding task running where two fit (docs/scale-out.md); the actors hold their
        # CPUs from the start, and the object store's backpressure still bounds memory.
        context.op_resource_reservation_enabled = False
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        decoded = source.map_batches(  # one task a block of positions (batch_size=None: the block is the batch)
            load_block,
            batch_size=None,
            fn_args=(names,),
            fn_kwargs={"image_size": self.card.image_size, "dicom": options.dicom},
            num_cpus=DECODER_CPUS,
            max_retries=DECODE_RETRIES,
        )
        return decoded.map_batches(
            ScoringActor,
            batch_size=options.batch_size,
            fn_constructor_args=(self._bundle, options),
            compute=_actor_pool(self.scorers),
            num_cpus=SCORER_CPUS,
        )


def _rows_of(batch: dict[str, Any], paths: list[Path]) -> list[Row]:
    """Make the rows of one batch of the actors' columns, named by PATHS; each file's warnings are handed over first."""
    for cell, path in zip(batch[WARNINGS].tolist(), paths, strict=True):
        hand_over(warnings_of(cell, path))
    return rows_from_columns(batch, [str(path) for path in paths])


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
def _ray_core_quiet() -> Iterator[None]:
    """Within, Ray starts without a note on this process's standard error, and its C++ core writes none there later.

    Ray's C++ core logs a warning on every actor pool that Ray Data starts (about Ray Data's own
    constructor arguments): its level is set to fatal while the core starts (RAY_BACKEND_LOG_LEVEL,
    when the user set it, wins), and the note that it was set, written as the core starts, is
    discarded with the rest of the start-up's native output; the cluster's own processes, started
    meanwhile, write to their log files. Errors from `ray.init` come as exceptions.
    """
    level = os.environ.get("RAY_BACKEND_LOG_LEVEL")
    os.environ["RAY_BACKEND_LOG_LEVEL"] = level or "fatal"
    try:
        with native_stderr_discarded():
            yield
    finally:
        if level is None:
            del os.environ["RAY_BACKEND_LOG_LEVEL"]


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
