"""`xscan drift`'s work: the scans of a results file's last run (or every row) against the model card's drift reference.

The last run is told by the `run` column (xscan.scoring.results.RUN_COLUMN): its rows are those
with the highest run number. Rows with an error are left out; out-of-scope rows count (they are
often the drift itself). The test is xscan.stats.drift's. Against a baseline results file, the
DICOM headers of both runs' files are read again and compared too (xscan.stats.acquisition).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from xscan.errors import UsageError
from xscan.model.card import default_weights_dir, read_card
from xscan.scoring.pipeline import read_header_tags
from xscan.scoring.results import KEY_COLUMN, MEASURE_COLUMNS, RUN_COLUMN, drift_values, read_table
from xscan.stats.acquisition import FIELDS, compare_headers
from xscan.stats.drift import LEVEL, MIN_SCANS, DriftVerdict, judge


class DriftUsageError(UsageError):
    """Drift cannot be judged: too few scans, a results file from before the drift columns, a card without a reference."""


def drift_of_results(
    results: Path,
    weights_dir: Path | None = None,
    every_row: bool = False,
    baseline: Path | None = None,
) -> DriftVerdict:
    """The drift verdict on RESULTS' last run (EVERY_ROW: all its rows) against the card in WEIGHTS_DIR (default: the bundled model).

    With a BASELINE results file, the DICOM headers of the run's files are also compared with those
    of every file the baseline scored; each family of tests then gets half of the level, so the
    chance of any false alarm stays the same.
    """
    card = read_card(weights_dir or default_weights_dir())
    if not card.drift:
        raise DriftUsageError(
            f"the model card of {card.model_id} has no drift reference: run xscan train DATA --out WEIGHTS "
            "--reference-only"
        )
    table = read_table(results)
    missing = [column for column in (*MEASURE_COLUMNS, RUN_COLUMN) if column not in table.columns]
    if missing:
        raise DriftUsageError(
            f"{results} was written before the drift columns ({', '.join(missing)}): score the folder again "
            "into a new results file (or with --overwrite) to check it for drift"
        )
    records = [record for record in table.records if record["probability"] and not record["error"]]
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
    values = drift_values(
        records, with_probability=not foreign
    )  # a site calibration moved the score away from the reference
    if baseline is None:
        return judge(values, card.drift.statistics, len(records))
    verdict = judge(values, card.drift.statistics, len(records), LEVEL / 2)
    before = [record for record in read_table(baseline).records if record["probability"] and not record["error"]]
    headers, left_out = compare_headers(header_values(records), header_values(before), LEVEL / 2)
    return replace(verdict, headers=headers, left_out=verdict.left_out + left_out)


def header_values(records: list[dict[str, str]]) -> dict[str, list[str]]:
    """Per acquisition field, the value in each RECORD's file, read again from its DICOM header ("" for any other file)."""
    tags = [read_header_tags(Path(record.get(KEY_COLUMN) or record["path"]), FIELDS) for record in records]
    return {field: [tag[field] for tag in tags] for field in FIELDS}
