"""A small corpus of inputs the model was not built for, made from what packages ship and from real scans.

Used by tests/model/test_scope.py; run it to look at the corpus:
`PYTHONPATH=tests python -m support.scope_corpus OUT_DIR`.
Each kind is a folder of PNGs:

- photographs, documents, microscopy and other pictures: scikit-image's sample images;
- other modalities' slices: CT, MR, ultrasound and nuclear medicine images from pydicom's test files,
  rendered to grey the way xscan reads DICOM and saved without their tags;
- blank, noise and gradient images drawn here;
- broken renderings of real chest films from validation patients (never trained on): turned by 90
  and 180 degrees, inverted grey levels; and small crops of full-resolution films.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from support.data import FULLRES, validation_scans

SKIMAGE_IMAGES = (
    "astronaut",
    "brick",
    "camera",
    "cat",
    "cell",
    "checkerboard",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "shepp_logan_phantom",
    "text",
)
PYDICOM_SLICES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "JPGExtended.dcm",
    "emri_small.dcm",
    "liver_1frame.dcm",
    "US1_J2KR.dcm",
)


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 3:
        image = cv2.cvtColor(image[..., :3].astype(np.uint8), cv2.COLOR_RGB2GRAY)
    if image.dtype != np.uint8:
        image = cv2.normalize(image.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return image


def pictures() -> dict[str, np.ndarray]:
    import skimage.data

    return {name: _grey(getattr(skimage.data, name)()) for name in SKIMAGE_IMAGES}


def other_modalities() -> dict[str, np.ndarray]:
    import pydicom.data

    from xscan.input.decode import decode

    folder = Path(pydicom.data.__file__).parent / "test_files"
    return {name.removesuffix(".dcm"): decode(folder / name) for name in PYDICOM_SLICES if (folder / name).exists()}


def drawn() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, 400).astype(np.uint8)
    return {
        "black": np.zeros((400, 400), np.uint8),
        "white": np.full((400, 400), 255, np.uint8),
        "grey": np.full((300, 500), 128, np.uint8),
        "noise": rng.integers(0, 256, (400, 400), dtype=np.uint8),
        "noise_blurred": cv2.GaussianBlur(rng.integers(0, 256, (400, 400), dtype=np.uint8), (0, 0), 4),
        "gradient_256_levels": np.tile(np.arange(256, dtype=np.uint8), (256, 1)),
        "gradient_vertical": np.tile(ramp[:, None], (1, 400)),
        "gradient_radial": cv2.normalize(
            np.hypot(*np.mgrid[-200:200, -200:200]).astype(np.float32), None, 0, 255, cv2.NORM_MINMAX
        ).astype(np.uint8),
    }


def broken_renderings(chest_films: list[Path]) -> dict[str, np.ndarray]:
    made = {}
    for path in chest_films:
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        h, w = grey.shape
        made[f"{path.stem}_rot90"] = cv2.rotate(grey, cv2.ROTATE_90_CLOCKWISE)
        made[f"{path.stem}_rot180"] = cv2.rotate(grey, cv2.ROTATE_180)
        made[f"{path.stem}_inverted"] = 255 - grey
    return made


def crops(full_resolution_films: list[Path]) -> dict[str, np.ndarray]:
    """A fifth of each side from the middle of full-resolution films.

    Big enough to decode, too little to be a chest film.
    """
    made = {}
    for path in full_resolution_films:
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        h, w = grey.shape
        made[f"{path.stem}_crop"] = grey[h // 3 : h // 3 + h // 5, w // 3 : w // 3 + w // 5]
    return made


def write_corpus(out: Path, chest_films: list[Path], full_resolution_films: list[Path]) -> dict[str, list[Path]]:
    """Write every kind into OUT/<kind>/<name>.png; returns the paths by kind."""
    kinds = {
        "pictures": pictures(),
        "other_modalities": other_modalities(),
        "drawn": drawn(),
        "broken_renderings": broken_renderings(chest_films),
        "crops": crops(full_resolution_films),
    }
    written: dict[str, list[Path]] = {}
    for kind, images in kinds.items():
        (out / kind).mkdir(parents=True, exist_ok=True)
        for name, image in images.items():
            path = out / kind / f"{name}.png"
            cv2.imwrite(str(path), image)
            written.setdefault(kind, []).append(path)
    return written


def validation_films() -> list[Path]:
    """Chest films of patients the bundled model neither trained nor tuned on, 8 of each class."""
    return validation_scans("NORMAL", 8) + validation_scans("PNEUMONIA", 8)


def full_resolution_films() -> list[Path]:
    """Every twelfth full-resolution original: 10 films of both classes."""
    return sorted(FULLRES.glob("*/*.jpeg"))[::12]


if __name__ == "__main__":
    for kind, paths in write_corpus(Path(sys.argv[1]), validation_films(), full_resolution_films()).items():
        print(f"{kind}: {len(paths)}")
