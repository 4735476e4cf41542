"""The `xscan` command line: parses options, calls the library, prints; it computes nothing itself."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from xscan import __version__

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow start-up chatter is not for users

DISCLAIMER = "xscan aids a physician; it is not a diagnostic device."
app = typer.Typer(
    help=f"Score folders of chest X-rays for pneumonia, offline, on a CPU.\n\n{DISCLAIMER}",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
err = Console(stderr=True)

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_FATAL = 0, 1, 2, 3


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xscan {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Score folders of chest X-rays for pneumonia, offline, on a CPU."""


@app.command()
def train(
    data_dir: Path = typer.Argument(..., help="Folder with one sub-folder per class: NORMAL and PNEUMONIA."),
    out: Path = typer.Option(Path("weights"), "--out", help="Folder to write the weights and model card into."),
    epochs: int = typer.Option(30, help="Most epochs to train; early stopping on validation AUC may stop sooner."),
    image_size: int = typer.Option(160, help="Square model input side in pixels."),
    batch_size: int = typer.Option(32, help="Images per training step."),
    val_fraction: float = typer.Option(0.15, help="Share of patients held out for validation."),
    seed: int = typer.Option(1337, help="Random seed for the split, augmentation and weights."),
) -> None:
    """Train the CNN on a labelled folder and write weights plus a model card.

    Validation patients are held out whole (no patient on both sides). The decision threshold
    is chosen on validation for a sensitivity of 0.95 after temperature calibration.

    Example:

        xscan train ../shared/data/chest_xray/train --out weights/
    """
    from dataclasses import replace

    from xscan.model import ModelConfig
    from xscan.train import TrainConfig
    from xscan.train import train as run_training

    config = TrainConfig(
        val_fraction=val_fraction, seed=seed, epochs=epochs, batch_size=batch_size,
        model=replace(ModelConfig(), image_size=image_size),
    )
    command = shlex.join(["xscan", *sys.argv[1:]])
    try:
        card = run_training(data_dir, out, config, command, log=lambda line: err.print(line, highlight=False))
    except (FileNotFoundError, ValueError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(EXIT_USAGE) from None
    err.print(f"wrote {out / 'xscan-cnn.keras'} and its model card; model id {card.model_id}")
