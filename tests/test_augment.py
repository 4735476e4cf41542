import numpy as np
from conftest import real_scans

from xscan.augment import AugmentConfig, build_augmenter
from xscan.decode import decode
from xscan.preprocess import preprocess


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
    assert {"RandomRotation", "RandomZoom", "RandomContrast", "RandomGaussianBlur", "GaussianNoise"} <= set(names)
    assert "RandomFlip" not in [
        layer.__class__.__name__ for layer in build_augmenter(AugmentConfig(flip=False), seed=1).layers
    ]
