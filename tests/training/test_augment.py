import numpy as np
from support.data import real_scans

from xscan.input.decode import decode
from xscan.input.preprocess import preprocess
from xscan.training.augment import AugmentConfig, build_augmenter


def _batch():
    return np.stack([preprocess(decode(p), 160) for p in real_scans("PNEUMONIA", 4)])


def test_augmentation_changes_images_in_training_only_and_keeps_shape():
    batch = _batch()
    augmenter = build_augmenter(AugmentConfig(), seed=1)
    augmented = np.asarray(augmenter(batch, training=True))
    assert augmented.shape == batch.shape
    assert np.abs(augmented - batch).mean() > 0.01
    assert np.allclose(np.asarray(augmenter(batch, training=False)), batch, atol=1e-6)


def test_every_configured_step_is_a_layer():
    names = [layer.__class__.__name__ for layer in build_augmenter(AugmentConfig(), seed=1).layers]
    assert names[0] == "RandomFlip"
    assert {"RandomAffine", "RandomContrast", "RandomGaussianBlur", "GaussianNoise"} <= set(names)
    assert "RandomFlip" not in [
        layer.__class__.__name__ for layer in build_augmenter(AugmentConfig(flip=False), seed=1).layers
    ]


def _only(**kwargs) -> AugmentConfig:
    """A config with every step off but those given."""
    off = dict(
        flip=False,
        rotation=0.0,
        zoom_in=0.0,
        zoom_out=0.0,
        translation=0.0,
        contrast=0.0,
        brightness=0.0,
        aspect=0.0,
        blur_probability=0.0,
        noise=0.0,
        normal_zoom=1.0,
    )
    return AugmentConfig(**{**off, **kwargs})


def _roughness(images: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(images, axis=2)).mean(axis=(1, 2, 3))


def test_blur_probability_is_the_share_of_images_blurred():
    batch = np.repeat(_batch(), 8, axis=0)  # 32 images
    never = np.asarray(build_augmenter(_only(blur_probability=0.0), seed=2)(batch, training=True))
    always = np.asarray(
        build_augmenter(_only(blur_probability=1.0, blur_sigma=(1.0, 1.0)), seed=2)(batch, training=True)
    )
    half = np.asarray(build_augmenter(_only(blur_probability=0.5, blur_sigma=(1.0, 1.0)), seed=2)(batch, training=True))
    assert np.allclose(never, batch, atol=1e-6)
    assert np.all(_roughness(always) < 0.9 * _roughness(batch))
    blurred = (_roughness(half) < 0.9 * _roughness(batch)).mean()
    assert 0.2 < blurred < 0.8


def test_zoom_out_leaves_a_black_margin():
    batch = _batch()
    zoomed = np.asarray(build_augmenter(_only(zoom_in=-0.25, zoom_out=0.25), seed=3)(batch, training=True))
    assert np.all(zoomed[:, :4, :, :].max(axis=(1, 2, 3)) == 0.0)  # the top rows are fill, not image


def test_aspect_jitter_scales_width_and_height_independently():
    # A bright vertical bar: aspect jitter changes its width without changing its height, so the
    # share of bright pixels varies between images, while zoom and rotation are off.
    batch = np.zeros((32, 160, 160, 1), np.float32)
    batch[:, 20:140, 70:90] = 1.0
    jittered = np.asarray(build_augmenter(_only(aspect=0.3), seed=4)(batch, training=True))
    widths = (jittered[:, 80, :, 0] > 0.5).sum(axis=1)
    heights = (jittered[:, :, 80, 0] > 0.5).sum(axis=1)
    assert widths.min() < 18 and widths.max() > 22  # exp(+-0.3) of 20 pixels: about 15 to 27
    assert heights.min() < 112 and heights.max() > 128
    assert np.corrcoef(widths, heights)[0, 1] < 0.9  # not one zoom factor for both sides


def test_zoomed_normal_films_keep_the_black_margin_of_zooming_out():
    # Every film zoomed out by 1.25; the framing balance zooms normal films in as well. Their margin
    # must stay: a margin only on pneumonia films would tell the classes apart.
    batch = _batch()
    labels = np.array([0, 0, 0, 1], np.int32)
    augmenter = build_augmenter(
        _only(zoom_in=-0.25, zoom_out=0.25, normal_zoom=1.45, normal_zoom_probability=1.0), seed=6
    )
    zoomed = np.asarray(augmenter(batch, training=True, labels=labels))
    assert np.all(zoomed[:, :4, :, :].max(axis=(1, 2, 3)) == 0.0)
    assert np.all(zoomed[:, 70:90, 70:90].mean(axis=(1, 2, 3)) > 0.05)  # the film itself is still there
