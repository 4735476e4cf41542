"""What `xscan sr` does: the studies of a results CSV -> a report each and heatmap images -> optionally a PACS."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from xscan.pacs.identity import device_uid, uid_root
from xscan.pacs.send import CALLING_AE_TITLE, SENT_LOG, Node, Sent, send_reports
from xscan.pacs.sr import Identity, Written, scored_images, write_reports
from xscan.pacs.studies import BY_STUDY, Study, check_sources, file_of, group_studies, studies_from_results
from xscan.scoring.results import read_rows

if TYPE_CHECKING:
    from xscan.model.scorer import Scorer


@dataclass(frozen=True)
class HeatmapsWritten:
    """The heatmap images in the folder's heatmaps/ after a run: every one's path, and how many were new."""

    paths: list[Path] = field(default_factory=list)
    new: int = 0


@dataclass(frozen=True)
class Delivered:
    """What `report_studies` did: the reports written, what was sent, the heatmap images written."""

    written: Written
    sent: Sent | None  # None without a node to send to
    images: HeatmapsWritten | None = None  # None with images=False
    studies: list[Study] = field(default_factory=list)  # the studies reported on, as grouped from the results


def report_studies(
    results: Path,
    folder: Path,
    node: Node | None = None,
    calling_ae_title: str = CALLING_AE_TITLE,
    *,
    files: Collection[Path] | None = None,
    images: bool = True,
    uid_root_text: str | None = None,
    weights: Path | None = None,
    state_dir: Path | None = None,
    scorer: Scorer | None = None,
) -> Delivered:
    """Write a structured report per DICOM study of the results, and heatmap images; then send them to a node.

    Called again for the same folder (a re-run, or `xscan listen` for a study that gained images),
    an unchanged report stays and a changed one amends the one in the folder (see xscan.pacs.sr).
    A scored file gone since scoring is refused before anything is written; after a failed send
    every file stays in the folder and the sent log says which were stored, so that the same
    command, run again, sends only the rest.

    Args:
        results: The results CSV of `xscan score`.
        folder: Where the reports go, as <StudyInstanceUID>.dcm, the heatmap images in heatmaps/,
            and the sent log, sent.csv.
        node: Where to store the reports and images it does not hold yet; None writes them only.
        calling_ae_title: xscan's AE title towards the node.
        files: When given, limits the reports to the studies of those scored files (`xscan listen`
            reports a study once it is complete, while others still arrive); only their headers are read.
        images: Whether to write a heatmap image per film.
        uid_root_text: --uid-root; None is xscan's default root.
        weights: The model the heatmaps come from when no scorer is given (None: the bundled model);
            it must be the results' model.
        state_dir: Where this install's device UID is kept (None: the user's state folder).
        scorer: A loaded model for the heatmaps (a service calling this for each study passes its own).

    Returns:
        The reports written, what was sent (None without a node) and the heatmap images written.

    Raises:
        SourceChangedError: A scored file is gone since scoring; names it (exit 2).
        UsageError: The results come from another model than the one loaded for the heatmaps.
        DeliveryError: A report or image could not be stored on the node.
    """
    root = uid_root(uid_root_text)
    if files is None:
        studies = studies_from_results(results)
    else:
        wanted = set(files)
        studies = group_studies(row for row in read_rows(results) if file_of(row) in wanted)
    check_sources(studies)
    identity = Identity(root, device_uid(state_dir))
    if images:
        from xscan.model.scorer import load_scorer
        from xscan.pacs.images import check_model, films_of

        reported = [s for s in studies if s.grouped_by == BY_STUDY]
        films = films_of(reported, [scored_images(s) for s in reported])
        if films:
            scorer = scorer or load_scorer(weights, scope_check=False)  # the map only: no scope files read
            check_model(films, scorer)
    written = write_reports(studies, folder, identity)
    drawn = None
    if images:
        from xscan.pacs.images import HEATMAP_FOLDER, write_heatmap_images

        drawn = HeatmapsWritten()
        if films:
            drawn = HeatmapsWritten(*write_heatmap_images(films, folder / HEATMAP_FOLDER, scorer, root))
    if node is None:
        return Delivered(written, None, drawn, studies)
    to_send = written.paths + (drawn.paths if drawn else [])
    return Delivered(written, send_reports(to_send, node, folder / SENT_LOG, calling_ae_title), drawn, studies)
