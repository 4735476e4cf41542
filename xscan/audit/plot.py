"""The audit drawn: each figure per period with its 95 % Wilson interval, and the promised line (the `plots` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from xscan.audit.check import Audit
from xscan.reporting.plots import require_matplotlib

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FIGURES = (("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("ppv", "PPV"))


def write_audit_plot(audit: Audit, output: Path) -> Path:
    """Draw AUDIT into the PNG OUTPUT: one panel per figure, periods along the bottom, alarms in red.

    Args:
        audit: what xscan.audit.check.audit_results found.
        output: the PNG to write (its folder is made).

    Returns:
        OUTPUT.

    Raises:
        PlotsUnavailable: matplotlib is not installed.
    """
    require_matplotlib()
    # The object API with an Agg canvas, as xscan.reporting.plots: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2 * len(FIGURES), 3.8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(FIGURES), sharey=True)
    for ax, (attribute, title) in zip(axes, FIGURES, strict=True):
        _panel(ax, audit, attribute, title)
    axes[0].set_ylabel("per period, 95 % Wilson interval")
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output)
    return output


def _panel(ax: Axes, audit: Audit, attribute: str, title: str) -> None:
    promised = {test.promised.figure: test.promised.value for test in audit.tests}
    shown = [(i, getattr(p, attribute), bool(p.reached.get(attribute))) for i, p in enumerate(audit.periods)]
    shown = [(i, value, alarm) for i, value, alarm in shown if value.value is not None]
    if shown:
        x = [i for i, _, _ in shown]
        y = [value.value for _, value, _ in shown]
        spread = [
            [value.value - value.low for _, value, _ in shown],
            [value.high - value.value for _, value, _ in shown],
        ]
        ax.errorbar(x, y, yerr=spread, fmt="none", ecolor="grey", capsize=3)
        ax.scatter(x, y, c=["tab:red" if alarm else "tab:blue" for _, _, alarm in shown], zorder=3)
    if attribute in promised:
        ax.axhline(promised[attribute], color="tab:green", linestyle="--", label=f"promised {promised[attribute]:.3f}")
        ax.legend(loc="best", fontsize=8)
    ax.set_title(f"{title} (red: the alarm)" if attribute in promised else f"{title} (not promised)")
    ax.set_xticks(range(len(audit.periods)), [p.name for p in audit.periods], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
