"""`xscan drift`'s work: the scans of a results file's last run (or every row) against the model card's drift reference.

The run that wrote each row and its drift statistics are read from the state file beside the
results (xscan.scoring.state; a 17-column results file has them as columns): the last run's rows
are those with the highest run number. Rows with an error are left out; out-of-scope rows count (they are
often the drift itself). The test is xscan.stats.drift's. Against a baseline results file, the
DICOM headers of both runs' files are read again and compared too (xscan.stats.acquisition).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from xscan.errors import UsageError
from xscan.model.card import default_weights_dir, read_card
from xscan.scoring.pipeline import read_header_tags
from xscan.scoring.results import KEY_COLUMN, MEASURE_COLUMNS, RUN_COLUMN, Row, drift_values, read_rows, read_table
from xscan.scoring.state import state_path
from xscan.stats.acquisition import FIELDS, compare_headers
from xscan.stats.drift import LEVEL, MIN_SCANS, DriftVerdict, judge


class DriftUsageError(UsageError):
    """Drift cannot be judged: too few scans, no drift statistics (none in the file, no state file), no reference."""


def drift_of_results(
    results: Path,
    weights_dir: Path | None = None,
    every_row: bool = False,
    baseline: Path | None = None,
    prevalence: float | None = None,
) -> DriftVerdict:
    """The drift verdict on the last run of the results file RESULTS: `drift_of_rows` on its rows.

    Args:
        results: the results CSV.
        weights_dir: the weights folder whose card holds the reference (default: the bundled model).
        every_row: judge all its rows, not only its last run's.
        baseline: a results file whose files' DICOM headers this run's are compared with.
        prevalence: the site's share of pneumonia; fixes the class mixture instead of fitting it.

    Returns:
        The verdict.

    Raises:
        DriftUsageError: drift cannot be judged (see `drift_of_rows`).
    """
    return drift_of_rows(list(read_rows(results)), results, weights_dir, every_row, baseline, prevalence)


def drift_of_rows(
    rows: Sequence[Row],
    results: Path,
    weights_dir: Path | None = None,
    every_row: bool = False,
    baseline: Path | None = None,
    prevalence: float | None = None,
) -> DriftVerdict:
    """The drift verdict on the last run of ROWS (EVERY_ROW: all of them) against the card in WEIGHTS_DIR.

    With a BASELINE results file, the DICOM headers of the run's files are also compared with those
    of every file the baseline scored; each family of tests then gets half of the level, so the
    chance of any false alarm stays the same. A prevalence (the site's share of pneumonia) fixes the
    class mixture the scans are compared with instead of fitting it (xscan.stats.drift).

    Args:
        rows: the rows of a results file, as read once by the caller.
        results: that file, named in messages.
        weights_dir: the weights folder whose card holds the reference (default: the bundled model).
        every_row: judge all the rows, not only the last run's.
        baseline: a results file whose files' DICOM headers this run's are compared with.
        prevalence: the site's share of pneumonia, or None to fit the mixture.

    Returns:
        The verdict.

    Raises:
        DriftUsageError: the card has no reference, the rows lack the drift columns, hold another
            model's scores, or are too few.
    """
    card = read_card(weights_dir or default_weights_dir())
    if not card.drift:
        raise DriftUsageError(
            f"the model card of {card.model_id} has no drift reference: run xscan train DATA --out WEIGHTS "
            "--reference-only"
        )
    kept = [row.trailing_columns for row in rows]  # the state's fields (or an old file's columns), where known
    # Every row xscan has scored since the drift statistics has a run number: none at all means none are kept.
    missing = [] if any(fields.get(RUN_COLUMN) for fields in kept) or not rows else [*MEASURE_COLUMNS, RUN_COLUMN]
    if missing and not any(KEY_COLUMN in fields for fields in kept):  # today's layout, no state file beside it
        raise DriftUsageError(
            f"{results} has no state file beside it ({state_path(results).name}), which holds each scan's drift "
            "statistics and run: score the folder again into it to check it for drift"
        )
    if missing:
        raise DriftUsageError(
            f"{results} was written before the drift columns ({', '.join(missing)}): score the folder again "
            "into a new results file (or with --overwrite) to check it for drift"
        )
    records = [row.as_record() for row in rows if row.probability is not None and not row.error]
    if not every_row:
        runs = [int(record[RUN_COLUMN]) for record in records if record[RUN_COLUMN].isdigit()]
        last = max(runs, default=None)
        records = [record for record in records if record[RUN_COLUMN] == str(last)]
    foreign = sorted({record["model"] for record in records} - {card.model_id})
    if any(not model.startswith(card.model_id) for model in foreign):
        raise DriftUsageError(
            f"{results} holds rows of model {', '.join(foreign)}, not {card.model_id}: give its --weights"
        )
    if len(records) < MIN_SCANS:
        which = "scored rows" if every_row else "scored rows in its last run"
        raise DriftUsageError(
            f"{results} has {len(records)} {which}: at least {MIN_SCANS} are needed to tell drift from chance"
            + ("" if every_row else " (--all uses every row)")
        )
    # A site calibration moved the score away from the reference: its probability is left out.
    values = drift_values(records, with_probability=not foreign)
    if baseline is None:
        return judge(values, card.drift.statistics, len(records), prevalence=prevalence)
    verdict = judge(values, card.drift.statistics, len(records), LEVEL / 2, prevalence)
    before = [record for record in read_table(baseline).with_state() if record["probability"] and not record["error"]]
    headers, left_out = compare_headers(header_values(records), header_values(before), LEVEL / 2)
    return replace(verdict, headers=headers, left_out=verdict.left_out + left_out)


def header_values(records: list[dict[str, str]]) -> dict[str, list[str]]:
    """Per acquisition field, the value in each record's file, read again from its DICOM header.

    Args:
        records: results records, each with its file's path (resolved where the results say).

    Returns:
        Each field's values, one per record ("" for a file that is not a DICOM).
    """
    tags = [read_header_tags(Path(record.get(KEY_COLUMN) or record["path"]), FIELDS) for record in records]
    return {field: [tag[field] for tag in tags] for field in FIELDS}
