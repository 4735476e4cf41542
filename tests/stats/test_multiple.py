"""Holm's step-down correction against hand-worked cases."""

from xscan.stats.multiple import holm, holm_levels


def test_holm_stops_at_the_first_p_value_over_its_level():
    # Sorted: 0.01 <= 0.05/4 = 0.0125 rejects; 0.03 > 0.05/3 = 0.0167 stops, so 0.04 and 0.2 are kept too.
    assert holm([0.01, 0.04, 0.03, 0.2], 0.05) == [True, False, False, False]
    assert holm_levels([0.01, 0.04, 0.03, 0.2], 0.05) == [0.0125, 0.025, 0.05 / 3, 0.05]


def test_holm_rejects_all_when_each_passes_its_level():
    # 0.001 <= 0.05/3, 0.013 <= 0.05/2, 0.02 <= 0.05: all three; Bonferroni (0.05/3 each) would keep the last two.
    assert holm([0.02, 0.001, 0.013], 0.05) == [True, True, True]
    assert holm([], 0.05) == []
