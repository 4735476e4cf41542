"""Grad-CAM of the ensemble: cell geometry, exactness, placement on a constructed network, randomisation check."""

from dataclasses import asdict

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import spearmanr
from support.data import FULLRES, real_scans

from xscan.explain.cam import Explainer
from xscan.explain.gradcam import GradCam, grid_of, last_stage_layer, randomized_copy
from xscan.explain.overlay import Grid, heat_on_scan
from xscan.model.bundle import scorer_of
from xscan.model.card import ModelCard, model_config_from_card
from xscan.model.network import ModelConfig, build_model, member_logit_layer
from xscan.scoring.pipeline import load_scan


def _all_ones(network):
    """Every conv kernel averages its inputs: activations stay positive, so no ReLU cuts a gradient path."""
    for layer in network.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([np.full(layer.kernel.shape, 1.0 / np.prod(layer.kernel.shape[:3]), np.float32)])
    return network


def test_the_grid_is_where_the_gradient_says_each_cell_looks():
    config = ModelConfig(image_size=64, widths=(4, 8, 8), extra_convs_from_stage=1, members=1)
    network = _all_ones(build_model(config))
    grid = grid_of(network, config)
    features = keras.Model(network.inputs, network.get_layer(last_stage_layer(config, 0)).output)
    scan = tf.Variable(np.ones((1, 64, 64, 1), np.float32))
    interior = 0
    for cell in range(grid.cells):
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(features(scan, training=False)[0, grid.cells // 2, cell])
        columns = np.flatnonzero(np.abs(tape.gradient(total, scan).numpy()[0, :, :, 0]).sum(axis=0))
        low, high = columns.min(), columns.max()
        if low > 0 and high < 63:  # a field cut by the border says nothing of its centre
            interior += 1
            assert (low + high) / 2 == grid.offset + grid.stride * cell
            assert high - low + 1 == grid.field
    assert interior >= 2


def test_the_bundled_models_cells_are_off_by_half_a_cell_from_an_even_grid(scorer):
    config = model_config_from_card(scorer.card)
    assert grid_of(scorer.network, config) == Grid(cells=5, stride=32, offset=31.0, field=175)


def test_the_cells_add_up_to_the_ensemble_logit(scorer):
    config = model_config_from_card(scorer.card)
    scans = np.stack(
        [load_scan(path, 160).model_input for path in real_scans("NORMAL", 3) + real_scans("PNEUMONIA", 3)]
    )
    cells = GradCam(scorer.network, config).cells(scans)
    logits = np.asarray(scorer.network(scans, training=False)).reshape(-1)
    bias = np.mean([scorer.network.get_layer(member_logit_layer(m)).bias.numpy()[0] for m in range(config.members)])
    assert cells.shape == (6, 5, 5)
    assert np.allclose(cells.sum(axis=(1, 2)) + bias, logits, atol=1e-4)
    assert np.abs(cells).max() > 0.05  # a real map, not zeros that happen to match a zero logit


def _blob_scan(width: int, height: int, centre: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(0)
    scan = rng.integers(0, 150, (height, width)).astype(np.uint8)
    cv2.circle(scan, centre, 40, 250, thickness=-1)
    return scan


@pytest.fixture(scope="module")
def brightness_explainer():
    """A constructed two-member network whose logit grows with local brightness: evidence where the scan is bright."""
    config = ModelConfig(members=2)
    network = _all_ones(build_model(config))
    for member in range(config.members):
        dense = network.get_layer(member_logit_layer(member))
        dense.set_weights([np.ones(dense.kernel.shape, np.float32), np.zeros(1, np.float32)])
    card = ModelCard(
        name="bright",
        version="0",
        config=asdict(config),
        preprocessing={"image_size": config.image_size},
        temperature=1.0,
        threshold=0.5,
        threshold_rule="test",
        bias=0.0,
    )
    return Explainer(scorer_of(network, card))


@pytest.mark.parametrize(
    "centre",
    [(110, 80), (370, 80), (110, 220), (370, 220)],
    ids=["top-left", "top-right", "bottom-left", "bottom-right"],
)
def test_the_heat_peaks_where_the_bright_blob_is(brightness_explainer, tmp_path, centre):
    width, height = 480, 300  # not square: the map must be stretched back on each axis
    path = tmp_path / "blob.png"
    cv2.imwrite(str(path), _blob_scan(width, height, centre))
    [[explanation]] = list(brightness_explainer.explain([path], workers=1))
    grey, heat = brightness_explainer.picture(explanation, long_side=width)
    assert grey.shape == heat.shape == (height, width)
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    assert (x < width / 2) == (centre[0] < width / 2) and (y < height / 2) == (centre[1] < height / 2)
    assert abs(x - centre[0]) < width / 5 and abs(y - centre[1]) < height / 5  # within one cell of the blob


def _mean_spearman(first: list[np.ndarray], second: list[np.ndarray]) -> float:
    return float(np.mean([spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(first, second, strict=True)]))


def test_maps_change_when_the_last_stage_is_randomised(scorer):
    """Adebayo et al. (2018): a map that survives randomising the weights it explains shows the input, not the model."""
    config = model_config_from_card(scorer.card)
    paths = [p for label in ("NORMAL", "PNEUMONIA") for p in real_scans(label, 6) + real_scans(label, 6, FULLRES)]
    scans = np.stack([load_scan(path, config.image_size).model_input for path in paths])
    randomized_network = randomized_copy(scorer.network, config, stages=1, seed=0)
    trained_cam = GradCam(scorer.network, config)
    trained, randomized = trained_cam.cells(scans), GradCam(randomized_network, config).cells(scans)
    assert _mean_spearman(trained, randomized) < 0.5  # the signed cell maps
    # The maps as drawn (positive part on the input's pixels), where the trained one draws anything.
    drawn = [(a, b) for a, b in zip(trained, randomized, strict=True) if a.max() > 0 and b.max() > 0]
    assert len(drawn) >= 6
    shown = [[heat_on_scan(np.maximum(m, 0), trained_cam.grid, 160, 160, 160) for m in pair] for pair in drawn]
    assert _mean_spearman([a for a, _ in shown], [b for _, b in shown]) < 0.5
    # Only the last stage was randomised: the stage before it is as trained.
    earlier = f"m0_s{len(config.widths) - 2}_b_conv"
    assert np.array_equal(
        randomized_network.get_layer(earlier).kernel.numpy(), scorer.network.get_layer(earlier).kernel.numpy()
    )
