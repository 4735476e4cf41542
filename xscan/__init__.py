"""xscan: scores folders of chest X-rays for pneumonia, offline, on a CPU.

xscan aids a physician; it is not a diagnostic device.

The library under the `xscan` command:

    from xscan import ScoreOptions, score_folder
    summary = score_folder(Path("scans"), Path("results.csv"), ScoreOptions(batch_size=16))

`score_paths` is the streaming core beneath it (paths in, rows out, nothing written), and
`load_scan` its step for one file; `explain_paths` draws Grad-CAM overlays as `xscan explain`
does. Names are imported on first use, so that `import xscan` stays cheap for commands that
never score.
"""

from __future__ import annotations

from typing import Any

from xscan.about import DISCLAIMER as DISCLAIMER
from xscan.about import __version__ as __version__

__all__ = [
    "DicomOptions",
    "ExplainOptions",
    "ExplainSummary",
    "LoadedScan",
    "Row",
    "ScoreOptions",
    "ScoreSummary",
    "Scorer",
    "explain_paths",
    "load_scan",
    "load_scorer",
    "score_folder",
    "score_paths",
]


def __getattr__(name: str) -> Any:
    if name in ("score_folder", "ScoreSummary"):
        from xscan.scoring import run as module
    elif name in ("ScoreOptions", "DicomOptions"):
        from xscan.scoring import options as module
    elif name in ("score_paths", "load_scan", "LoadedScan"):
        from xscan.scoring import pipeline as module
    elif name in ("load_scorer", "Scorer"):
        from xscan.model import scorer as module
    elif name in ("explain_paths", "ExplainOptions", "ExplainSummary"):
        from xscan.explain import run as module
    elif name == "Row":
        from xscan.scoring import results as module
    else:
        raise AttributeError(f"module 'xscan' has no attribute {name!r}")
    return getattr(module, name)
