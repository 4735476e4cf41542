"""Each ensemble member of a weights folder on its own, against the ensemble, on the robustness table.

Uses the validation split recorded in the folder's model card (same seed and fraction as training);
each member gets its own calibration and threshold, chosen on validation as `xscan train` does.

    python docs/runs/members.py weights ../shared/data/chest_xray/train
"""

import sys
from pathlib import Path

import numpy as np

from xscan.calibration import fit_platt, threshold_for_sensitivity
from xscan.dataset import find_labelled_scans, split_by_patient
from xscan.model import calibrated_probability, load_scorer, member_logit_layer, model_config_from_card
from xscan.train import _logits, evaluate_shifts, load_images, preprocess_all


def main(weights: Path, data: Path) -> None:
    import keras

    scorer = load_scorer(weights, threads=0)
    recipe = scorer.card.training["recipe"]
    _, val_scans = split_by_patient(find_labelled_scans(data), recipe["val_fraction"], recipe["seed"])
    labels = np.array([s.label for s in val_scans])
    greys = load_images(val_scans)
    size = scorer.card.image_size
    x = preprocess_all(greys, size)
    members = model_config_from_card(scorer.card).members
    networks = {f"member {i}": keras.Model(scorer.network.inputs, scorer.network.get_layer(member_logit_layer(i)).output)
                for i in range(members)}
    networks["ensemble"] = scorer.network
    print("| network | shift | AUC | sensitivity | specificity |\n| --- | --- | --- | --- | --- |")
    for name, network in networks.items():
        logits = _logits(network, x)
        calibration = fit_platt(logits, labels)
        threshold = threshold_for_sensitivity(calibrated_probability(logits, *calibration), labels, recipe["target_sensitivity"])
        rows = evaluate_shifts(network, greys, labels, size, calibration, threshold)
        for row in rows:
            print(f"| {name} | {row['shift']} | {row['auc']:.4f} | {row['sensitivity']:.3f} | {row['specificity']:.3f} |")
        worst = min(rows, key=lambda r: r["specificity"])
        print(f"| {name} | **worst** ({worst['shift']}) | {min(r['auc'] for r in rows):.4f} | | {worst['specificity']:.3f} |",
              flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
