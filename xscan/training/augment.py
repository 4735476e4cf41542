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
    # Width and height scaled independently by exp(+-0.3): the squash to a square distorts wide and narrow films
    # differently, and the pneumonia originals are wider; jitter takes the shape out of the signal.
    aspect: float = 0.3
    contrast: float = 0.3  # residual contrast change after equalization
    brightness: float = 0.15  # +-15 % of the value range
    blur_probability: float = 0.5  # share of images softened (detector and resampling blur)
    blur_sigma: tuple[float, float] = (0.3, 1.6)  # Gaussian sigma range in model-input pixels (5 x 5 kernel)
    noise: float = 0.03  # std of additive Gaussian noise (quantum mottle)
    # Framing balance: in the training split the thorax fills about 10 % more of the frame on pneumonia films
    # than on normal ones (medians of a scale registration against the mean film: docs/framing.py), so framing alone
    # predicts the class, and tightly collimated normal films are called pneumonia. A share of the normal films
    # is zoomed in further, by up to this factor, so that normals cover the pneumonia films' framing and beyond.
    normal_zoom: float = 1.45
    normal_zoom_probability: float = 0.6


class Augmenter:
    """The random steps, in order, applied to a float batch in [0, 1]."""

    def __init__(self, steps: list[Any]) -> None:
        """Hold the steps.

        Args:
            steps: Keras layers; the one named `random_affine` also takes the labels.
        """
        self.layers = steps

    def __call__(self, images: Any, training: bool = True, labels: Any = None) -> Any:
        """Apply the steps to a batch.

        Args:
            images: A float batch in [0, 1].
            training: Whether to change anything; False returns the batch as it is.
            labels: The batch's labels (1 = pneumonia): with them the framing balance zooms in a share
                of the normal films; without them it does nothing.

        Returns:
            The augmented batch.
        """
        for layer in self.layers:
            if layer.name == "random_affine":
                images = layer(images, training=training, labels=labels)
            else:
                images = layer(images, training=training)
        return images


def build_augmenter(config: AugmentConfig, seed: int) -> Augmenter:
    """Build the random layers of an augmentation config, seeded.

    Args:
        config: The strengths of each change.
        seed: The first layer's seed; each other layer's is offset from it.

    Returns:
        The augmenter; call it with training=True on a float batch in [0, 1].
    """
    from keras import layers

    steps = []
    if config.flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed))
    steps += [
        _random_affine(config, seed + 1),
        layers.RandomContrast(config.contrast, value_range=(0.0, 1.0), seed=seed + 4),
        layers.RandomBrightness(config.brightness, value_range=(0.0, 1.0), seed=seed + 5),
    ]
    if config.blur_probability > 0:
        # A (p, p) factor blurs each image with probability exactly p; one float would draw p in [0, factor).
        steps.append(
            layers.RandomGaussianBlur(
                factor=(config.blur_probability, config.blur_probability),
                kernel_size=5,
                sigma=config.blur_sigma,
                value_range=(0.0, 1.0),
                seed=seed + 6,
            )
        )
    steps.append(layers.GaussianNoise(config.noise, seed=seed + 7))
    return Augmenter(steps)


def _random_affine(config: AugmentConfig, seed: int) -> Any:
    """Rotation, zoom, aspect, shift and the framing balance in one resampling, the margin filled black.

    Keras has a layer for each of the three; chained, they resample every image three times,
    which blurs it and takes about twice as long on the CPU (docs/model.md has the timings).
    """
    import math

    import keras
    from keras import ops

    class RandomAffine(keras.layers.Layer):
        def __init__(self) -> None:
            super().__init__(name="random_affine")
            self.seed_generator = keras.random.SeedGenerator(seed)

        def call(self, images: Any, training: bool = True, labels: Any = None) -> Any:
            if not training:
                return images
            count, height, width = ops.shape(images)[0], ops.shape(images)[1], ops.shape(images)[2]

            def draw(low: float, high: float) -> Any:
                return keras.random.uniform((count,), low, high, seed=self.seed_generator)

            turn = config.rotation * 2 * math.pi
            angle = draw(-turn, turn)
            scale = draw(1 - config.zoom_in, 1 + config.zoom_out)  # > 1 samples a larger area: zoom out
            scale_x = scale * ops.exp(draw(-config.aspect, config.aspect))
            scale_y = scale * ops.exp(draw(-config.aspect, config.aspect))
            shift_x = draw(-config.translation, config.translation) * ops.cast(width, "float32")
            shift_y = draw(-config.translation, config.translation) * ops.cast(height, "float32")
            # The framing balance crops a normal film's central 1 / closer and enlarges it to the full frame;
            # the steps above then act on that enlarged film. Composed into the one resampling, the crop's
            # edge becomes the frame's edge: what falls outside it is filled black, so a zoomed normal
            # film gets the same black margins from zooming out as any other film, and margins do not
            # tell the classes apart.
            closer = ops.ones_like(angle)
            if labels is not None and config.normal_zoom > 1:
                factor = ops.exp(draw(0.0, math.log(config.normal_zoom)))
                chosen = (draw(0.0, 1.0) < config.normal_zoom_probability) & (ops.reshape(labels, (-1,)) == 0)
                closer = ops.where(chosen, factor, closer)
            scale_x, scale_y, shift_x, shift_y = scale_x / closer, scale_y / closer, shift_x / closer, shift_y / closer
            # Output pixel (x, y) samples input pixel centre + scale * R(angle) (p - centre) + shift.
            cx, cy = (ops.cast(width, "float32") - 1) / 2, (ops.cast(height, "float32") - 1) / 2
            # The sampling matrix is R(angle) @ diag(scale_x, scale_y).
            a0, a1 = scale_x * ops.cos(angle), -scale_y * ops.sin(angle)
            b0, b1 = scale_x * ops.sin(angle), scale_y * ops.cos(angle)
            a2 = cx - a0 * cx - a1 * cy + shift_x
            b2 = cy - b0 * cx - b1 * cy + shift_y
            zeros = ops.zeros_like(angle)
            transform = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
            moved = ops.image.affine_transform(
                images, transform, interpolation="bilinear", fill_mode="constant", fill_value=0
            )
            if labels is None or config.normal_zoom <= 1:
                return moved
            # Black outside the crop: where the sampled input point lies beyond the central 1 / closer of the film.
            xs = ops.reshape(ops.arange(width, dtype="float32"), (1, 1, -1))
            ys = ops.reshape(ops.arange(height, dtype="float32"), (1, -1, 1))
            per_image = lambda v: ops.reshape(v, (-1, 1, 1))  # noqa: E731
            source_x = per_image(a0) * xs + per_image(a1) * ys + per_image(a2)
            source_y = per_image(b0) * xs + per_image(b1) * ys + per_image(b2)
            half_x = per_image(ops.cast(width, "float32") / 2 / closer)
            half_y = per_image(ops.cast(height, "float32") / 2 / closer)
            inside = (ops.abs(source_x - cx) <= half_x) & (ops.abs(source_y - cy) <= half_y)
            return moved * ops.cast(inside, moved.dtype)[..., None]

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

    return RandomAffine()
