"""Compare weights folders on proxies of the shift to another acquisition period (docs/model.md, "What was tried").

    python docs/proxy.py OLD_WEIGHTS NEW_WEIGHTS ...

Scans: patients that every compared model held out (validation of the 0.15 split, which the 0.2
split's held-out part contains) and that lie in the report part of the current recipe's split, so
no compared model trained on them. Proxies, each applied to the decoded grey film before the shared
preprocessing: the film as it is; tight collimation (16 % cropped from each side: the thorax fills
the frame, as in the held-out normals called pneumonia); the same applied to normal films only,
pneumonia films as they are (5 % a side is the median gap in framing between the classes, docs/framing.py;
10 and 16 % go beyond it, as the held-out normals do); the squash shortcut (width x0.8 and x1.25
before the squash: a normal film of a pneumonia film's shape, and the reverse).
"""

import sys
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from xscan.input.decode import decode
from xscan.input.preprocess import preprocess
from xscan.model.scorer import load_scorer
from xscan.training.config import TrainConfig
from xscan.training.dataset import _patient_fraction, find_labelled_scans
from xscan.training.parts import split_for_training

TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray" / "train"


def crop(fraction):
    def shift(grey):
        h, w = grey.shape
        return grey[int(h * fraction) : h - int(h * fraction), int(w * fraction) : w - int(w * fraction)]

    return shift


def widen(factor):
    return lambda grey: cv2.resize(grey, (int(grey.shape[1] * factor), grey.shape[0]), interpolation=cv2.INTER_AREA)


def as_is(grey):
    return grey


# name: (change to normal films, change to pneumonia films)
PROXIES = {
    "as is": (as_is, as_is),
    "tight collimation (crop 16 %/side)": (crop(0.16), crop(0.16)),
    "normals at the pneumonia films' framing (crop 5 %/side)": (crop(0.05), as_is),
    "normals cropped 10 %/side, pneumonia as is": (crop(0.10), as_is),
    "normals cropped 16 %/side, pneumonia as is": (crop(0.16), as_is),
    "width x0.8": (widen(0.8), widen(0.8)),
    "width x1.25": (widen(1.25), widen(1.25)),
}


def main() -> None:
    config = TrainConfig()
    _, _, report = split_for_training(find_labelled_scans(TRAIN), config)
    scans = [s for s in report if _patient_fraction(s.patient_id, config.seed) < 0.15]
    labels = np.array([s.label for s in scans])
    greys = [decode(s.path) for s in scans]
    print(f"{len(scans)} scans ({(labels == 0).sum()} normal) held out by every model compared")
    print("| weights | proxy | AUC | sensitivity | specificity | normals called pneumonia |")
    print("| --- | --- | --- | --- | --- | --- |")
    for weights in sys.argv[1:]:
        scorer = load_scorer(Path(weights), threads=2)
        for name, (normal, pneumonia) in PROXIES.items():
            x = np.stack(
                [
                    preprocess((pneumonia if y else normal)(g), scorer.card.image_size)
                    for g, y in zip(greys, labels, strict=True)
                ]
            )
            p = scorer.probabilities(x)
            called = p >= scorer.card.threshold
            print(
                f"| {scorer.card.model_id} | {name} | {roc_auc_score(labels, p):.4f} | "
                f"{called[labels == 1].mean():.3f} | "
                f"{1 - called[labels == 0].mean():.3f} | {called[labels == 0].sum()} of {(labels == 0).sum()} |"
            )


if __name__ == "__main__":
    main()
