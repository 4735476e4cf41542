"""Drawing maps over scans: cells back on the scan's own geometry, blending, the colour bar and caption panel."""

import numpy as np
import pytest

from xscan.explain.overlay import (
    BAR_PANEL,
    LINE_HEIGHT,
    MOST_OPAQUE,
    SCALE_FLOOR,
    Grid,
    annotate,
    blend,
    colour_scale,
    heat_on_scan,
)

GRID = Grid(cells=5, stride=32, offset=31.0, field=175)  # the bundled model's, as tests/explain/test_explain.py checks
CELLS = np.arange(25, dtype=np.float32).reshape(5, 5)


def test_each_cell_lands_on_its_receptive_field_centre():
    heat = heat_on_scan(CELLS, GRID, 160, 160, 160)
    for row in range(5):
        for column in range(5):
            assert heat[31 + 32 * row, 31 + 32 * column] == pytest.approx(CELLS[row, column], abs=1e-4)


def test_the_squash_is_undone_axis_by_axis():
    # A scan three times as wide as high was squashed to 160 x 160: cell centres spread three times as far across.
    heat = heat_on_scan(CELLS, GRID, 160, 480, 160)
    assert heat.shape == (160, 480)
    for row in range(5):
        for column in range(5):
            # input pixel centre 31.5 + 32 j (continuous) lies at 3 x that on the scan, pixel index 94 + 96 j
            assert heat[31 + 32 * row, 94 + 96 * column] == pytest.approx(CELLS[row, column], abs=1e-4)


def test_beyond_the_outer_centres_the_nearest_cell_holds():
    heat = heat_on_scan(CELLS, GRID, 160, 160, 160)
    assert np.all(heat[:31, :31] == CELLS[0, 0])
    assert np.all(heat[159, 159] == CELLS[4, 4])


def test_where_there_is_no_heat_the_scan_is_untouched():
    grey = np.random.default_rng(0).integers(0, 256, (40, 60), dtype=np.uint8)
    heat = np.zeros((40, 60), np.float32)
    heat[10:20, 10:20] = 2.0
    blended = blend(grey, heat, scale=2.0)
    untouched = heat == 0
    assert np.array_equal(blended[untouched], np.repeat(grey[untouched][:, None], 3, axis=1))
    # At the top of the scale the colour takes MOST_OPAQUE of the pixel: turbo's red top is far from grey.
    assert np.abs(blended[15, 15].astype(int) - grey[15, 15]).max() > 0.3 * 255 * MOST_OPAQUE


def test_without_heat_a_plain_grey_picture():
    grey = np.full((10, 12), 77, np.uint8)
    assert np.all(blend(grey, None) == 77) and blend(grey, None).shape == (10, 12, 3)


def test_the_colour_scale_never_falls_below_its_floor():
    assert colour_scale(np.full((4, 4), SCALE_FLOOR / 10)) == SCALE_FLOOR
    assert colour_scale(np.zeros((4, 4))) == SCALE_FLOOR
    assert colour_scale(np.array([[0.0, 3.5]])) == 3.5


def test_annotate_adds_the_bar_panel_and_one_band_per_caption_line():
    image = np.zeros((200, 300, 3), np.uint8)
    annotated = annotate(image, 1.0, ["first line", "second line"])
    assert annotated.shape == (200 + 2 * LINE_HEIGHT + 12, 300 + BAR_PANEL, 3)
    bar = annotated[20:180, 300 + 10 : 300 + 24]
    assert bar[0].mean(axis=0)[2] > bar[0].mean(axis=0)[0]  # red (BGR) at the top of the bar, the scale's maximum
    assert bar[-1].mean(axis=0)[0] > bar[-1].mean(axis=0)[2]  # blue-ish at the bottom
    assert annotated[200:].max() > 200  # caption text drawn in the band
