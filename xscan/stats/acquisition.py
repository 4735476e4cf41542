"""The acquisition check: did the DICOM headers of a run's files change from a baseline run's?

A new X-ray unit, firmware or export pipeline shows in the headers before it shows in any score:
CheXstray (Soin et al. 2022, arXiv 2202.02833) monitors these fields. Each field is compared
between the two runs' files, a chi-square test of homogeneity on its values (PatientAge, a number,
with the two-sample Kolmogorov-Smirnov test), and Holm's correction across the fields keeps the
chance of any false alarm at the level asked for.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from xscan.stats.multiple import holm

FIELDS = (
    "Manufacturer",
    "ManufacturerModelName",
    "PhotometricInterpretation",
    "BitsStored",
    "PixelSpacing",
    "ViewPosition",
    "PatientAge",
)
NUMERIC = frozenset({"PatientAge"})
MIN_HEADERS = 20  # files with the field, on each side, below which a field is not tested
_AGE = re.compile(r"^(\d{1,3})([DWMY])$")
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


@dataclass(frozen=True)
class FieldFinding:
    """One header field's test, this run's files against the baseline's."""

    field: str
    test: str
    files: int  # this run's files with the field
    baseline_files: int
    p_value: float
    common: str  # this run's most common value (median for a number)
    baseline_common: str
    drifted: bool = False

    def describe(self) -> str:
        """Say the finding in one line.

        Returns:
            The field, the test, its p-value and file counts, and each side's most common value.
        """
        return (
            f"DICOM {self.field}: {self.test} p = {self.p_value:.4g} over {self.files} files against the baseline's "
            f"{self.baseline_files}; mostly {self.common or 'blank'}, the baseline's {self.baseline_common or 'blank'}"
        )


def age_in_years(age: str) -> float | None:
    """Read a DICOM age string in years.

    Args:
        age: `012Y`, `006M`, `003W` or `010D`.

    Returns:
        The age in years; None for anything else.
    """
    match = _AGE.match(age.strip().upper())
    return int(match.group(1)) * _AGE_UNIT_YEARS[match.group(2)] if match else None


def _compare(field: str, current: list[str], baseline: list[str]) -> FieldFinding:
    # Here, not at import: scipy.stats takes most of a second, and every `xscan score` imports this module.
    from scipy import stats

    if field in NUMERIC:
        now = np.array([years for years in map(age_in_years, current) if years is not None])
        before = np.array([years for years in map(age_in_years, baseline) if years is not None])
        p_value = float(stats.ks_2samp(now, before).pvalue)
        return FieldFinding(
            field,
            "Kolmogorov-Smirnov",
            len(now),
            len(before),
            p_value,
            f"{np.median(now):.3g} years",
            f"{np.median(before):.3g} years",
        )
    now, before = Counter(current), Counter(baseline)
    values = sorted(now.keys() | before.keys())
    table = np.array([[now[value] for value in values], [before[value] for value in values]])
    p_value = 1.0 if len(values) == 1 else float(stats.chi2_contingency(table, correction=False).pvalue)
    return FieldFinding(
        field, "chi-square", len(current), len(baseline), p_value, now.most_common(1)[0][0], before.most_common(1)[0][0]
    )


def compare_headers(
    current: dict[str, list[str]],
    baseline: dict[str, list[str]],
    level: float,
) -> tuple[list[FieldFinding], list[str]]:
    """Test each header field of FIELDS, this run's files against the baseline's, Holm-corrected.

    Blank values (a file that is not DICOM, a field it lacks) are not values. A field needs
    MIN_HEADERS files with it on each side (for PatientAge: files with a readable age).

    Args:
        current: Each field's values in this run's files.
        baseline: Each field's values in the baseline run's files.
        level: The chance of any false alarm across the fields.

    Returns:
        The findings of the fields tested, each marked drifted or not, and a line on each field left out.
    """
    findings, left_out = [], []
    for field in FIELDS:
        now = [value for value in current.get(field, []) if value]
        before = [value for value in baseline.get(field, []) if value]
        if field in NUMERIC:
            now = [value for value in now if age_in_years(value) is not None]
            before = [value for value in before if age_in_years(value) is not None]
        if min(len(now), len(before)) < MIN_HEADERS:
            left_out.append(
                f"DICOM {field}: {len(now)} files with it in this run, {len(before)} in the baseline, fewer than "
                f"{MIN_HEADERS} on a side"
            )
            continue
        findings.append(_compare(field, now, before))
    drifted = holm([finding.p_value for finding in findings], level)
    return [replace(finding, drifted=flag) for finding, flag in zip(findings, drifted, strict=True)], left_out
