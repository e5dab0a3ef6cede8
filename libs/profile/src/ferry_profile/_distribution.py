"""A numeric column's distribution, rebuilt from what its profile keeps.

The cumulative distribution function (CDF) of the finite values jumps at knots and is
linear between them. It is exact (an empirical CDF) when the profile keeps its exact
value counts, or when the column is integer-valued with fine bins at most 1 wide;
otherwise it is linear within each fine bin (at most 16,384 over the range), or within
each of the 20 histogram bins for profiles written before fine bins were kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ferry_profile._packing import unpack
from ferry_profile._results import Floats, NumericStats

__all__ = ["Cdf", "ks_statistic", "numeric_cdf", "wasserstein_distance"]


@dataclass(frozen=True)
class Cdf:
    """A CDF that jumps at ``knots`` and is linear between consecutive ones.

    Attributes:
        knots: strictly increasing positions.
        below: the CDF just left of each knot (mass strictly below it).
        at: the CDF at each knot (mass at or below it); between knot ``i`` and
            ``i + 1`` it rises linearly from ``at[i]`` to ``below[i + 1]``.
        resolution: the largest fraction of the values one linear piece spreads (0: exact);
            the CDF is off by at most that much anywhere.
    """

    knots: Floats
    below: Floats
    at: Floats
    resolution: float

    def evaluate(self, x: Floats) -> tuple[Floats, Floats]:
        """The CDF just left of and at each of ``x``."""
        knots, n = self.knots, self.knots.size
        index = np.searchsorted(knots, x, side="right") - 1
        here = np.clip(index, 0, n - 1)
        after = np.clip(index + 1, 0, n - 1)
        span = knots[after] - knots[here]
        fraction = np.where(span > 0, (x - knots[here]) / np.where(span > 0, span, 1.0), 0.0)
        inside = self.at[here] + fraction * (self.below[after] - self.at[here])
        on_knot = (index >= 0) & (knots[here] == x)
        at: Floats = np.where(index < 0, 0.0, np.where(on_knot, self.at[here], np.where(index >= n - 1, 1.0, inside)))
        below: Floats = np.where(index < 0, 0.0, np.where(on_knot, self.below[here], at))
        return below, at

    def masses(self, cuts: Floats) -> Floats:
        """Fractions of the values in ``(-inf, c1), [c1, c2), ..., [ck, inf)`` (``cuts`` increasing)."""
        below, _ = self.evaluate(cuts)
        masses: Floats = np.diff(np.concatenate([[0.0], below, [1.0]]))
        return masses


def numeric_cdf(stats: NumericStats) -> Cdf | None:
    """The CDF of a column's finite values (``None`` when it has none)."""
    if stats.count == 0 or not stats.histogram_counts:
        return None
    sketch = stats.sketch
    exact = sketch.get("exact_values")
    if exact is not None:
        values = unpack(exact["values"], np.float64)
        counts = unpack(exact["counts"], np.float64)
        return _steps(values, counts, resolution=0.0)
    fine = sketch.get("fine_histogram")
    if fine is not None:
        counts = unpack(fine["counts"], np.float64)
        width = math.ldexp(1.0, int(fine["exponent"]))
        nonzero = np.flatnonzero(counts)
        counts = counts[nonzero[0] : nonzero[-1] + 1]
        lower = (int(fine["offset"]) + int(nonzero[0]) + np.arange(counts.size + 1, dtype=np.float64)) * width
        if sketch.get("integral") and width <= 1.0:
            # Each integer sits on its fine bin's lower edge: the steps are exact.
            kept = counts > 0
            return _steps(lower[:-1][kept], counts[kept], resolution=0.0)
        return _linear(lower, counts, stats)
    edges = np.asarray(stats.histogram_edges, dtype=np.float64)
    return _linear(edges, np.asarray(stats.histogram_counts, dtype=np.float64), stats)


def ks_statistic(first: Cdf, second: Cdf) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the CDFs.

    Off by at most ``first.resolution + second.resolution``.
    """
    union = np.union1d(first.knots, second.knots)
    below_a, at_a = first.evaluate(union)
    below_b, at_b = second.evaluate(union)
    # Both CDFs are linear between union knots: the gap peaks at one of them.
    return float(max(np.abs(at_a - at_b).max(), np.abs(below_a - below_b).max()))


def wasserstein_distance(first: Cdf, second: Cdf) -> float:
    """The first Wasserstein distance: the area between the two CDFs."""
    union = np.union1d(first.knots, second.knots)
    below_a, at_a = first.evaluate(union)
    below_b, at_b = second.evaluate(union)
    start = (at_a - at_b)[:-1]  # the gap just right of each knot
    stop = (below_a - below_b)[1:]  # and just left of the next: linear in between
    width = np.diff(union)
    size = np.abs(start) + np.abs(stop)
    same_sign = start * stop >= 0
    area = np.where(same_sign, size / 2, (start**2 + stop**2) / (2 * np.where(size > 0, size, 1.0))) * width
    return float(area.sum())


def _steps(values: Floats, counts: Floats, resolution: float) -> Cdf:
    total = counts.sum()
    at = np.cumsum(counts) / total
    at[-1] = 1.0
    return Cdf(values, at - counts / total, at, resolution)


def _linear(edges: Floats, counts: Floats, stats: NumericStats) -> Cdf:
    """Linear within each bin; the outer edges clipped to the finite extremes."""
    low = stats.min if math.isfinite(stats.min) else edges[0]
    high = stats.max if math.isfinite(stats.max) else edges[-1]
    points = np.clip(edges, low, high)
    total = counts.sum()
    cumulative = np.concatenate([[0.0], np.cumsum(counts) / total])
    cumulative[-1] = 1.0
    # Clipping can make neighbouring points coincide: there the CDF jumps.
    knots, first = np.unique(points, return_index=True)
    last = np.concatenate([first[1:], [points.size]]) - 1
    return Cdf(knots, cumulative[first], cumulative[last], float(counts.max() / total))
