"""Training-time augmentation: Keras preprocessing layers applied to preprocessed scans."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of each random change; every value is recorded in the model card."""

    flip: bool = True  # left-right mirror
    rotation: float = 0.03  # fraction of a full turn: about +-11 degrees
    zoom_in: float = 0.15  # up to 15 % closer: tighter collimation, a bigger patient
    zoom_out: float = 0.25  # up to 25 % farther, the margin filled black: wider collimation, a smaller patient
    translation: float = 0.08  # +-8 % shift of the field of view
    contrast: float = 0.3  # residual contrast change after equalization
    brightness: float = 0.15  # +-15 % of the value range
    blur_probability: float = 0.5  # share of images softened (detector and resampling blur)
    blur_sigma: tuple[float, float] = (0.3, 1.6)  # Gaussian sigma range in model-input pixels (5 x 5 kernel)
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
        # Keras zooms out for a positive factor.
        layers.RandomZoom((-config.zoom_in, config.zoom_out), fill_mode="constant", seed=seed + 2),
        layers.RandomTranslation(config.translation, config.translation, fill_mode="constant", seed=seed + 3),
        layers.RandomContrast(config.contrast, value_range=(0.0, 1.0), seed=seed + 4),
        layers.RandomBrightness(config.brightness, value_range=(0.0, 1.0), seed=seed + 5),
    ]
    if config.blur_probability > 0:
        # A (p, p) factor blurs each image with probability exactly p; one float would draw p in [0, factor).
        steps.append(layers.RandomGaussianBlur(
            factor=(config.blur_probability, config.blur_probability), kernel_size=5, sigma=config.blur_sigma,
            value_range=(0.0, 1.0), seed=seed + 6,
        ))
    steps.append(layers.GaussianNoise(config.noise, seed=seed + 7))
    return keras.Sequential(steps, name="augment")
