"""PNG plots of a report: ROC and precision-recall curves, confusion matrix, calibration, probability histograms."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve

from xscan.errors import XscanError
from xscan.model.classes import NEGATIVE, POSITIVE
from xscan.reporting.report import Report

if TYPE_CHECKING:
    from matplotlib.axes import Axes

INSTALL_HINT = "--plots needs matplotlib: pip install 'xscan[plots]'"
BINS = 20  # probability histogram bins
CALIBRATION_BINS = 10


class PlotsUnavailable(XscanError, RuntimeError):
    """matplotlib, an optional extra, is not installed."""


def require_matplotlib() -> None:
    """Check that matplotlib is installed; call before any work.

    Raises:
        PlotsUnavailable: matplotlib is missing, with the install command.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotsUnavailable(INSTALL_HINT) from None


def write_plots(report: Report, folder: Path) -> list[Path]:
    """Write the report's PNGs into a folder.

    Without ground truth only the probability histogram can be drawn; with one class only,
    ROC and precision-recall curves are undefined and are not written.

    Args:
        report: The report.
        folder: Where to write them; made if missing.

    Returns:
        The paths written.

    Raises:
        PlotsUnavailable: matplotlib is missing.
    """
    require_matplotlib()
    folder.mkdir(parents=True, exist_ok=True)
    evaluation = report.evaluation
    if evaluation is None:
        scored = report.summary.probabilities
        return [_save(folder / "histogram.png", lambda ax: _histogram(ax, {"all scans": scored}, report.threshold))]
    truth, probabilities = evaluation.truth, evaluation.probabilities
    plots: dict[str, Callable[[Axes], None]] = {
        "confusion-matrix.png": lambda ax: _confusion(ax, evaluation.metrics),
        "calibration.png": lambda ax: _calibration(ax, truth, probabilities),
        "histogram.png": lambda ax: _histogram(
            ax, {POSITIVE: probabilities[truth == 1], NEGATIVE: probabilities[truth == 0]}, report.threshold
        ),
    }
    if truth.min() != truth.max():
        plots["roc.png"] = lambda ax: _roc(ax, truth, probabilities, evaluation.metrics)
        plots["precision-recall.png"] = lambda ax: _precision_recall(ax, truth, probabilities, evaluation.metrics)
    return [_save(folder / name, draw) for name, draw in plots.items()]


def _save(path: Path, draw: Callable[[Axes], None]) -> Path:
    # The object API with an Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 5), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    draw(figure.add_subplot())
    figure.savefig(path)
    return path


def _roc(ax: Axes, truth: np.ndarray, probabilities: np.ndarray, metrics: dict[str, float]) -> None:
    fpr, tpr, _ = roc_curve(truth, probabilities)
    ax.plot(fpr, tpr, label=f"AUC {metrics['auc']:.3f}")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    ax.plot(
        1 - metrics["specificity"],
        metrics["sensitivity"],
        "o",
        color="red",
        label=f"threshold {metrics['threshold']:.3f}",
    )
    ax.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity", title="ROC curve", aspect="equal")
    ax.legend(loc="lower right")


def _precision_recall(ax: Axes, truth: np.ndarray, probabilities: np.ndarray, metrics: dict[str, float]) -> None:
    precision, recall, _ = precision_recall_curve(truth, probabilities)
    ax.step(recall, precision, where="post", label=f"average precision {metrics['average_precision']:.3f}")
    ax.axhline(truth.mean(), linestyle=":", color="grey", label="prevalence")
    ax.plot(
        metrics["sensitivity"], metrics["precision"], "o", color="red", label=f"threshold {metrics['threshold']:.3f}"
    )
    ax.set(xlabel="sensitivity (recall)", ylabel="precision (PPV)", title="precision-recall curve", ylim=(0, 1.02))
    ax.legend(loc="lower left")


def _confusion(ax: Axes, metrics: dict[str, float]) -> None:
    counts = np.array([[metrics["tp"], metrics["fn"]], [metrics["fp"], metrics["tn"]]])
    darkest = max(int(counts.max()), 1)
    ax.imshow(counts, cmap="Blues", vmin=0, vmax=darkest)
    for (row, column), count in np.ndenumerate(counts):
        ax.text(
            column,
            row,
            str(count),
            ha="center",
            va="center",
            fontsize=16,
            color="white" if count > darkest / 2 else "black",
        )
    ax.set_xticks([0, 1], [f"predicted\n{POSITIVE}", f"predicted\n{NEGATIVE}"])
    ax.set_yticks([0, 1], [f"actual\n{POSITIVE}", f"actual\n{NEGATIVE}"])
    ax.set_title(f"confusion matrix at threshold {metrics['threshold']:.3f}")


def _calibration(ax: Axes, truth: np.ndarray, probabilities: np.ndarray) -> None:
    observed, predicted = calibration_curve(truth, probabilities, n_bins=CALIBRATION_BINS, strategy="uniform")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    ax.plot(predicted, observed, "o-", label="xscan")
    ax.set(
        xlabel="mean predicted probability of pneumonia",
        ylabel="observed share of pneumonia",
        title="calibration (reliability) diagram",
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
        aspect="equal",
    )
    ax.legend(loc="upper left")


def _histogram(ax: Axes, groups: dict[str, np.ndarray], threshold: float) -> None:
    for name, probabilities in groups.items():
        ax.hist(probabilities, bins=BINS, range=(0, 1), alpha=0.6, label=f"{name} ({probabilities.size})")
    ax.axvline(threshold, color="red", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="probability of pneumonia", ylabel="scans", title="probabilities by class", xlim=(0, 1))
    ax.legend(loc="upper center")
