"""`xscan explain`: options, progress and a summary on standard error, the run log; the work is `explain_paths`'."""

from __future__ import annotations

from pathlib import Path

import typer

from xscan.cli.app import exit_codes, open_log, say, sigterm_raises
from xscan.cli.score import ScoreView


def explain(
    paths: list[Path] = typer.Argument(..., help="Scans, or folders of scans searched recursively as by score."),
    output: Path = typer.Option(
        ..., "-o", "--output", file_okay=False, help="Folder for the overlay PNGs and explain.csv."
    ),
    size: int = typer.Option(None, min=64, max=4096, help="Pixels on the longer side of each overlay; default 512."),
    threshold: float = typer.Option(None, min=0.0, max=1.0, help="Decision threshold; default: the model card's."),
    workers: int = typer.Option(0, min=0, help="Decoding threads; 0 means one per CPU this process may use."),
    weights: Path = typer.Option(None, help="Weights folder; default: the bundled model."),
    log_file: Path = typer.Option(
        None, "--log-file", help="Append a line per failed file and a summary per run to this file."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but usage and fatal errors."),
) -> None:
    """Show where the model looked: a Grad-CAM heatmap over each scan, one PNG per scan.

    Writes OUTPUT/<path below the folder>.png (a file given by name: OUTPUT/<name>.png): the
    scan at its own proportions, the ensemble's heatmap blended over it, a colour bar and a
    caption with the probability, label, threshold and model id. OUTPUT/explain.csv has the
    columns of score, then `overlay`, the PNG's path below OUTPUT. A file that cannot be read
    is a row with a reason in `error`, and the run goes on; exit codes as for score (0 all
    drawn, 2 usage, 3 fatal, 4 some files failed, 130 interrupted, 143 terminated). The map
    shows where the evidence for pneumonia lies, coarsely (5 x 5 cells), not why: see
    docs/explain.md.

    xscan aids a physician; it is not a diagnostic device.

    Example:

    \b
        xscan explain ./scans -o heatmaps/
        xscan explain scan1.jpeg scan2.dcm -o heatmaps/ --size 1024 --log-file explain.log
    """
    from xscan.explain.run import ExplainOptions, explain_paths

    options = ExplainOptions(
        threshold=threshold, workers=workers, weights=weights, **({"long_side": size} if size else {})
    )
    log = open_log(log_file)
    view = ScoreView(log, quiet, keep_rows=False)
    with log, view, sigterm_raises(), exit_codes(log=log):
        summary = explain_paths(paths, output, options, on_event=view)
        view.close()
        log.line(
            "run",
            f"explain output={summary.output} drawn={summary.drawn} failed={summary.failed} "
            f"seconds={summary.seconds:.1f} exit={summary.exit_code}",
        )
        if not quiet:
            say(
                f"drawn {summary.drawn}, failed {summary.failed} in {summary.seconds:.1f} s; "
                f"overlays and explain.csv in {output}"
            )
    raise typer.Exit(summary.exit_code)
