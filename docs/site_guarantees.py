"""Write README's table of what a labelled sample buys with `xscan calibrate`.

tests/site/test_site.py checks that the table is current.

The numbers come from xscan.stats.conformal, the functions calibrate itself uses.

    python docs/site_guarantees.py
"""

import re
from pathlib import Path

from xscan.stats.conformal import caught_range, rank, scores_needed

ROOT = Path(__file__).resolve().parents[1]
MARKED = re.compile(r"<!-- site-guarantees -->\n(.*?)\n<!-- /site-guarantees -->", re.S)
TARGETS = (0.9, 0.95, 0.98)
CONFIDENCES = (0.9, 0.95)
SAMPLE_SIZES = (20, 50, 100, 200, 500)


def _promised(n: int, target: float, confidence: float | None) -> str:
    at = rank(n, target, confidence)
    if at < 1:
        return "refused"
    expected, low, high = caught_range(n, at)
    return f"rank {at}: {expected:.3f} ({low:.3f}-{high:.3f})"


def tables() -> str:
    with_confidence = " | ".join(f">= S with probability {c:g}" for c in CONFIDENCES)
    lines = [
        f"| target sensitivity S | expected sensitivity >= S | {with_confidence} |",
        "| --- | ---: | " + " | ".join("---:" for _ in CONFIDENCES) + " |",
    ]
    for target in TARGETS:
        needed = [scores_needed(target)] + [scores_needed(target, c) for c in CONFIDENCES]
        lines.append(f"| {target:g} | " + " | ".join(str(n) for n in needed) + " |")
    lines += ["", "| pneumonia scans | expected >= 0.95 | >= 0.95 with probability 0.95 |", "| ---: | --- | --- |"]
    lines += [f"| {n} | {_promised(n, 0.95, None)} | {_promised(n, 0.95, 0.95)} |" for n in SAMPLE_SIZES]
    return "\n".join(lines)


def main() -> None:
    path = ROOT / "README.md"
    path.write_text(
        MARKED.sub(lambda _: f"<!-- site-guarantees -->\n{tables()}\n<!-- /site-guarantees -->", path.read_text())
    )


if __name__ == "__main__":
    main()
