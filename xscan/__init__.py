"""xscan: scores folders of chest X-rays for pneumonia, offline, on a CPU.

xscan aids a physician; it is not a diagnostic device.

The library under the `xscan` command:

    from xscan import ScoreOptions, score_folder
    summary = score_folder(Path("scans"), Path("results.csv"), ScoreOptions(batch_size=16))

`score_paths` is the streaming core beneath it (paths in, rows out, nothing written), and
`load_scan` its step for one file. Names are imported on first use, so that `import xscan`
stays cheap for commands that never score.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "DicomOptions", "LoadedScan", "Row", "ScoreOptions", "ScoreSummary", "Scorer",
    "load_scan", "load_scorer", "score_folder", "score_paths",
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
    elif name == "Row":
        from xscan.scoring import results as module
    else:
        raise AttributeError(f"module 'xscan' has no attribute {name!r}")
    return getattr(module, name)
