"""Write the bundled model card's tables into README.md and docs/model.md (tests/model/test_model_tables.py checks).

Run after `xscan train ... --out weights`: python docs/update_tables.py
"""

import re
from pathlib import Path

from xscan.model.card import Figures, ModelCard, default_weights_dir, read_card

ROOT = Path(__file__).resolve().parents[1]
MARKED = re.compile(r"<!-- model-tables -->\n(.*?)\n<!-- /model-tables -->", re.S)


def _ci(figures: Figures, name: str, digits: int = 3) -> str:
    value = getattr(figures, name)
    low, high = figures.intervals.get(name, (None, None))
    return f"{value:.{digits}f}" if low is None else f"{value:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def _figure_row(name: str, figures: Figures, out_of_scope: str = "") -> str:
    return (
        f"| {name} | {figures.n} | {_ci(figures, 'auc')} | {_ci(figures, 'sensitivity')} | "
        f"{_ci(figures, 'specificity')} | {_ci(figures, 'precision')} | {out_of_scope} |"
    )


def tables(card: ModelCard) -> str:
    lines = [
        "| scans | n | AUC (95 % CI) | sensitivity | specificity | precision | out of scope |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        _figure_row(
            "validation, report part (chose nothing)",
            card.validation,
            f"{card.scope.rates['validation (report part), in scope']:.3f}" if card.scope else "",
        ),
    ]
    for external in card.external:
        lines.append(
            _figure_row(f"{external.name}: all (out of population)", external.all, f"{external.out_of_scope_rate:.3f}")
        )
        subsets = (("PA films", external.pa_films), ("kept by the scope check", external.kept_by_scope_check))
        for subset, figures in subsets:
            if figures:
                lines.append(_figure_row(f"{external.name}: {subset}", figures))
    lines.append(_figure_row("validation, selection part (chose epoch, calibration, threshold)", card.selection))
    lines += [
        "",
        f"Threshold {card.threshold:.4f} ({card.threshold_rule}); calibration sigmoid(logit / {card.temperature:.3f} "
        f"+ {card.bias:.3f}). Brier {card.validation.brier:.4f}, ECE {card.validation.ece:.4f} on the report part.",
    ]
    if card.scope:
        lines += ["", "| out-of-scope check on | judged out of scope |", "| --- | --- |"]
        lines += [f"| {name} | {rate:.3f} |" for name, rate in card.scope.rates.items()]
    lines += ["", "| shift (report part) | AUC | sensitivity | specificity |", "| --- | --- | --- | --- |"]
    lines += [f"| {r.shift} | {r.auc:.4f} | {r.sensitivity:.3f} | {r.specificity:.3f} |" for r in card.robustness]
    worst = min(card.robustness, key=lambda r: r.specificity)
    lines.append(
        f"\nWorst specificity: {worst.shift}, {worst.specificity:.3f}; "
        f"worst AUC: {min(r.auc for r in card.robustness):.4f}."
    )
    return "\n".join(lines)


def main() -> None:
    block = tables(read_card(default_weights_dir()))
    for name in ("README.md", "docs/model.md"):
        path = ROOT / name
        text = MARKED.sub(lambda _: f"<!-- model-tables -->\n{block}\n<!-- /model-tables -->", path.read_text())
        path.write_text(text)


if __name__ == "__main__":
    main()
