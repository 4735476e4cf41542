"""Training-time augmentation: Keras preprocessing layers applied to preprocessed scans."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of each random change; every value is recorded in the model card."""

    flip: bool = True  # left-right mirror
    rotation: float = 0.03  # fraction of a full turn: about +-11 degrees
    zoom: float = 0.15  # +-15 % scale: different collimation and patient size
    translation: float = 0.08  # +-8 % shift of the field of view
    contrast: float = 0.3  # residual contrast change after equalization
    brightness: float = 0.15  # +-15 % of the value range
    blur_probability: float = 0.25  # share of images softened (detector and resampling blur)
    noise: float = 0.03  # std of additive Gaussian noise (quantum mottle)


def build_augmenter(config: AugmentConfig, seed: int) -> Any:
    """A Keras model of random layers; call it with training=True on a float batch in [0, 1]."""
    import keras
    from keras import layers

    steps = []
    if config.flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed))
    steps += [
        layers.RandomRotation(config.rotation, fill_mode="constant", seed=seed + 1),
        layers.RandomZoom((-config.zoom, config.zoom), fill_mode="constant", seed=seed + 2),
        layers.RandomTranslation(config.translation, config.translation, fill_mode="constant", seed=seed + 3),
        layers.RandomContrast(config.contrast, value_range=(0.0, 1.0), seed=seed + 4),
        layers.RandomBrightness(config.brightness, value_range=(0.0, 1.0), seed=seed + 5),
    ]
    if config.blur_probability > 0:
        steps.append(
            layers.RandomGaussianBlur(factor=config.blur_probability, kernel_size=3, sigma=1.0, value_range=(0.0, 1.0), seed=seed + 6)
        )
    steps.append(layers.GaussianNoise(config.noise, seed=seed + 7))
    return keras.Sequential(steps, name="augment")
