"""`xscan info`: the model card as tables."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from xscan.about import DISCLAIMER
from xscan.cli.app import exit_codes


def info(
    weights: Path = typer.Option(None, help="Weights folder; default: the bundled model."),
) -> None:
    """Print the model card: architecture, preprocessing, threshold, training data and validation metrics.

    Example:

        xscan info
    """
    from xscan.model.card import default_weights_dir, read_card

    with exit_codes():
        card = read_card(weights or default_weights_dir())
    console = Console()
    table = Table(title=f"{card.model_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("model id", card.model_id)
    table.add_row("architecture", ", ".join(f"{k}={v}" for k, v in asdict(card.config).items()))
    table.add_row("preprocessing", card.preprocessing.steps)
    table.add_row("input size", f"{card.image_size} x {card.image_size}")
    table.add_row("threshold", f"{card.threshold:.4f} ({card.threshold_rule})")
    table.add_row(
        "calibration", f"sigmoid(logit / {card.temperature:.3f} + {card.bias:.3f}), fitted on the selection part"
    )
    if card.training:
        data = card.training.data
        scans = f"{sum(data.scans.values())} scans of {data.patients} patients {data.scans}, " if data.scans else ""
        table.add_row(
            "training data",
            f"{data.source}\n{data.folder}: {scans}sha256 {data.content_sha256 or '(not recorded)'}\n"
            f"train {data.train}, selection {data.selection}, report {data.report}",
        )
    if card.intended_population:
        table.add_row("intended population", card.intended_population)
    if card.scope:
        rates = "\n".join(f"{rate:.3f} of {name}" for name, rate in card.scope.rates.items())
        table.add_row(
            "out-of-scope check",
            f"in-scope probability < {card.scope.in_scope_threshold:.4f} or feature distance > "
            f"{card.scope.distance_threshold:.1f} ({card.scope.threshold_rule})\n{rates}",
        )
    if card.training:
        table.add_row(
            "trained with",
            f"{card.training.command}\n{card.training.minutes} min, "
            f"keras {card.training.keras_version}, started {card.training.started}",
        )
    table.add_row("weights sha256", card.weights_sha256)
    if card.litert:
        table.add_row(
            "scoring network",
            f"{card.litert.file} (LiteRT, quantization {card.litert.quantization}), sha256 {card.litert.sha256}",
        )
    console.print(table)
    metrics = Table(title="validation, report part (patients held out that chose nothing)", title_justify="left")
    names = ("n", "auc", "accuracy", "sensitivity", "specificity", "precision", "brier", "ece")
    for name in names:
        metrics.add_column(name, justify="right")
    metrics.add_row(*(_fmt(getattr(card.validation, name, None)) for name in names))
    console.print(metrics)
    if card.site_guidance:
        console.print(f"At a new site: {card.site_guidance}", markup=False, highlight=False)
    if card.robustness:
        shifts = Table(title="robustness on validation under acquisition shifts", title_justify="left")
        for name in ("shift", "auc", "sensitivity", "specificity"):
            shifts.add_column(name, justify="left" if name == "shift" else "right")
        for row in card.robustness:
            shifts.add_row(*(_fmt(getattr(row, name)) for name in ("shift", "auc", "sensitivity", "specificity")))
        console.print(shifts)
    console.print(DISCLAIMER)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)
