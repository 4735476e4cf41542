"""Print the model card's validation and robustness tables as Markdown, for README.md and docs/model.md."""

import sys
from pathlib import Path

from xscan.model import default_weights_dir, read_card

card = read_card(Path(sys.argv[1]) if len(sys.argv) > 1 else default_weights_dir())
v = card.validation
print("| n | AUC | accuracy | sensitivity | specificity | precision | Brier | ECE (before calibration) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
print(f"| {v['n']} | {v['auc']:.4f} | {v['accuracy']:.3f} | {v['sensitivity']:.3f} | {v['specificity']:.3f} | "
      f"{v['precision']:.3f} | {v['brier']:.4f} | {v['ece']:.4f} ({v['ece_before_calibration']:.4f}) |")
print()
print("| shift | AUC | sensitivity | specificity |")
print("| --- | --- | --- | --- |")
for row in card.robustness:
    print(f"| {row['shift']} | {row['auc']:.4f} | {row['sensitivity']:.3f} | {row['specificity']:.3f} |")
worst = min(card.robustness, key=lambda r: r["specificity"])
print(f"\nworst specificity: {worst['shift']} {worst['specificity']:.3f}; "
      f"worst AUC: {min(r['auc'] for r in card.robustness):.4f}")
