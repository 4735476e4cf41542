"""`xscan train`: the recipe's options, their defaults read from the recipe itself; the work is xscan.training's."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from xscan.cli.app import exit_codes, say
from xscan.errors import UsageError

if TYPE_CHECKING:
    from xscan.training.config import TrainConfig

ONLY_FLAGS = ("--scope-only", "--litert-only", "--reference-only")  # modes that keep the trained model: one at a time


class _RecipeDefault:
    """An option's default read from the training recipe (TrainConfig, and ModelConfig inside it).

    Click calls it for the value and shows str() of it in --help, so the training recipe (xscan.training.config)
    is imported only by `xscan train` and `xscan train --help`.
    """

    def __init__(self, read: Callable[[TrainConfig], Any]) -> None:
        self._read = read

    def __call__(self) -> Any:
        from xscan.training.config import TrainConfig

        return self._read(TrainConfig())

    def __str__(self) -> str:
        return str(self())


def train(
    data_dir: Path = typer.Argument(..., help="Folder with one sub-folder per class: NORMAL and PNEUMONIA."),
    out: Path = typer.Option(Path("weights"), "--out", help="Folder to write the weights and model card into."),
    epochs: int = typer.Option(
        default_factory=_RecipeDefault(lambda c: c.epochs),
        help="Most epochs to train; early stopping on validation AUC may stop sooner.",
    ),
    image_size: int = typer.Option(
        default_factory=_RecipeDefault(lambda c: c.model.image_size), help="Square model input side in pixels."
    ),
    members: int = typer.Option(
        default_factory=_RecipeDefault(lambda c: c.model.members),
        min=1,
        help="Networks trained side by side and averaged (an ensemble).",
    ),
    batch_size: int = typer.Option(
        default_factory=_RecipeDefault(lambda c: c.batch_size), help="Images per training step."
    ),
    val_fraction: float = typer.Option(
        default_factory=_RecipeDefault(lambda c: c.val_fraction),
        help="Share of patients held out: half selects epoch, calibration and thresholds, half only reports.",
    ),
    seed: int = typer.Option(
        default_factory=_RecipeDefault(lambda c: c.seed), help="Random seed for the split, augmentation and weights."
    ),
    external: Path = typer.Option(
        None,
        "--external",
        help="A labelled folder (NORMAL / PNEUMONIA) from outside the intended "
        "population, e.g. adult films: part teaches the out-of-scope check, part is reported in the card.",
    ),
    labels_file: Path = typer.Option(
        None,
        "--labels-file",
        exists=True,
        dir_okay=False,
        help="CSV with columns path,label[,patient], paths relative to DATA_DIR, instead of class "
        "folders; the patient column keeps a patient's scans on one side of the split.",
    ),
    scope_only: bool = typer.Option(
        False,
        "--scope-only",
        help="Keep the trained model in --out and fit only its "
        "out-of-scope check again (on the card's own split), e.g. with --external films of your site.",
    ),
    litert_only: bool = typer.Option(
        False,
        "--litert-only",
        help="Keep the trained model in --out and only write the LiteRT "
        "file that scoring runs (xscan-cnn.tflite) from its weights and scope check, e.g. for a "
        "weights folder made before xscan train wrote one; nothing is trained.",
    ),
    reference_only: bool = typer.Option(
        False,
        "--reference-only",
        help="Keep the trained model in --out and compute only the "
        "drift check's reference again (the validation patients of the card's own split).",
    ),
    data_source: str = typer.Option(
        None,
        "--data-source",
        help="Where the scans came from (data set, site, period, licence), recorded in the model card. Without it "
        "the card names the Kermany et al. 2018 training split only when the folder's content is that split "
        "(by its sha256), and says 'not stated' for any other folder.",
    ),
) -> None:
    """Train the CNN ensemble on a labelled folder and write weights plus a model card.

    Validation patients are held out whole (no patient on both sides): half of them choose the
    epoch, the calibration (Platt scaling) and the threshold (the highest reaching sensitivity
    0.95), the other half choose nothing and give the card's figures. The patient of a scan is
    its DICOM PatientID, the labels file's patient column, or a Kermany / NIH file-name pattern;
    a scan with none of these is its own patient, and a warning says how many there are. The
    members train side by side and their logits are averaged; a small scope network and feature
    statistics make the out-of-scope check; the validation patients' statistics are the drift check's
    reference (xscan drift). The card records the folder, its scans and patients per class and a
    sha256 of its files and labels. --scope-only, --litert-only and --reference-only keep the trained
    model and take one at a time. Training needs TensorFlow: pip install 'xscan[train]'.

    Example:

        xscan train ../shared/data/chest_xray/train --out weights/ --external ../shared/data/nih_adult
    """
    from dataclasses import replace

    from xscan.model.card import WEIGHTS_FILE
    from xscan.training.config import TrainConfig

    recipe = TrainConfig()
    config = replace(
        recipe,
        val_fraction=val_fraction,
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        model=replace(recipe.model, image_size=image_size, members=members),
    )
    base = ["xscan", "train", str(data_dir), "--out", str(out)]
    labelled = ["--labels-file", str(labels_file)] if labels_file else []
    labelled += ["--data-source", data_source] if data_source else []
    with exit_codes():
        chosen = [flag for flag, on in zip(ONLY_FLAGS, (scope_only, litert_only, reference_only), strict=True) if on]
        if len(chosen) > 1:
            raise UsageError(
                f"{chosen[0]} and {chosen[1]} cannot be used together: each keeps the trained model and does one "
                "thing; run one, then the other"
            )
        if litert_only:
            from xscan.training.convert import convert_to_litert

            card = convert_to_litert(out, shlex.join([*base, "--litert-only"]), say)
        elif reference_only:
            from xscan.training.refit import refit_reference

            command = shlex.join([*base, "--reference-only", *labelled])
            card = refit_reference(data_dir, out, command, labels_file, data_source)
        elif scope_only:
            from xscan.training.refit import refit_scope

            command = shlex.join(
                [*base, "--scope-only", *(["--external", str(external)] if external else []), *labelled]
            )
            card = refit_scope(
                data_dir, out, config, command, say, external=external, labels_file=labels_file, data_source=data_source
            )
        else:
            from xscan.training.train import train as run_training

            # Every option spelled out, so the card's command reproduces the run whatever the defaults become.
            command = shlex.join(
                [
                    *base,
                    "--epochs",
                    str(epochs),
                    "--image-size",
                    str(image_size),
                    "--members",
                    str(members),
                    "--batch-size",
                    str(batch_size),
                    "--val-fraction",
                    str(val_fraction),
                    "--seed",
                    str(seed),
                    *(["--external", str(external)] if external else []),
                    *labelled,
                ]
            )
            card = run_training(
                data_dir, out, config, command, say, external=external, labels_file=labels_file, data_source=data_source
            )
    say(f"wrote {out / WEIGHTS_FILE} and its model card; model id {card.model_id}")
