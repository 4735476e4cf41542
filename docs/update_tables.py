"""Write the bundled model card's validation and robustness tables into README.md and docs/model.md.

Run after `xscan train ... --out weights`: python docs/update_tables.py
"""

import re
from pathlib import Path

from xscan.card import ModelCard, default_weights_dir, read_card

ROOT = Path(__file__).resolve().parents[1]


def tables(card: ModelCard) -> str:
    v = card.validation
    lines = [
        "| n | AUC | accuracy | sensitivity | specificity | precision | Brier | ECE (before calibration) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {v['n']} | {v['auc']:.4f} | {v['accuracy']:.3f} | {v['sensitivity']:.3f} | {v['specificity']:.3f} | "
        f"{v['precision']:.3f} | {v['brier']:.4f} | {v['ece']:.4f} ({v['ece_before_calibration']:.4f}) |",
        "",
        f"Threshold {card.threshold:.4f} ({card.threshold_rule}); calibration sigmoid(logit / {card.temperature:.3f} "
        f"+ {card.bias:.3f}).",
        "",
        "| shift | AUC | sensitivity | specificity |",
        "| --- | --- | --- | --- |",
        *(f"| {r['shift']} | {r['auc']:.4f} | {r['sensitivity']:.3f} | {r['specificity']:.3f} |" for r in card.robustness),
    ]
    worst = min(card.robustness, key=lambda r: r["specificity"])
    lines.append(f"\nWorst specificity: {worst['shift']}, {worst['specificity']:.3f}; "
                 f"worst AUC: {min(r['auc'] for r in card.robustness):.4f}.")
    return "\n".join(lines)


def main() -> None:
    block = tables(read_card(default_weights_dir()))
    for name in ("README.md", "docs/model.md"):
        path = ROOT / name
        text = re.sub(r"<!-- model-tables -->.*?<!-- /model-tables -->",
                      lambda _: f"<!-- model-tables -->\n{block}\n<!-- /model-tables -->", path.read_text(), flags=re.S)
        path.write_text(text)


if __name__ == "__main__":
    main()
