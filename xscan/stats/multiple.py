"""Many tests at once: Holm's step-down correction, which keeps the chance of any false alarm at the level."""

from __future__ import annotations

from collections.abc import Sequence


def holm(p_values: Sequence[float], level: float) -> list[bool]:
    """Tell which p-values reject at a family level (Holm, Scand. J. Statist. 6, 1979).

    The k-th smallest p-value of m is tested at level / (m - k + 1), smallest first, and the first
    that does not pass stops the rest.

    Args:
        p_values: The tests' p-values.
        level: The chance of any false alarm across them.

    Returns:
        Whether each rejects, in their own order.
    """
    rejected = [False] * len(p_values)
    for rank, index in enumerate(sorted(range(len(p_values)), key=lambda i: p_values[i])):
        if p_values[index] > level / (len(p_values) - rank):
            break
        rejected[index] = True
    return rejected


def holm_levels(p_values: Sequence[float], level: float) -> list[float]:
    """Give the level each p-value is tested at under Holm's correction.

    Args:
        p_values: The tests' p-values.
        level: The family level.

    Returns:
        Each one's level, in their own order.
    """
    levels = [level] * len(p_values)
    for rank, index in enumerate(sorted(range(len(p_values)), key=lambda i: p_values[i])):
        levels[index] = level / (len(p_values) - rank)
    return levels
