"""Numeric column statistics: exact moments, exact value counts while few, DDSketch, fine histogram."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import DenseStore

from ferry_profile._counts import DenseCounts, ExactValues
from ferry_profile._packing import pack, unpack
from ferry_profile._results import (
    HISTOGRAM_BINS,
    QUANTILES,
    RELATIVE_ACCURACY,
    Floats,
    Ints,
    NumericStats,
    ProfileMergeError,
)

__all__ = ["EXACT_VALUES", "FINE_BINS", "NumericAccumulator"]

FINE_BINS = 16384
# Numeric columns with at most this many distinct values get exact quantiles and histograms.
EXACT_VALUES = 4096
# ddsketch's logarithmic mapping; keys are computed in bulk with the same formula
# (key = ceil(log2(v) * multiplier)) so one vectorised pass fills the stores.
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_KEY_MULTIPLIER = math.log(2) / math.log1p(2 * RELATIVE_ACCURACY / (1 - RELATIVE_ACCURACY))


class NumericAccumulator:
    """Exact moments and extremes, a DDSketch and a fine exact histogram.

    While a column has few distinct values (up to ``exact_limit``), their exact
    counts are kept too, and its quantiles and histogram are then exact.
    """

    def __init__(self, exact_limit: int = 0) -> None:
        self.count = 0  # finite values
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.seen = 0  # non-null, non-NaN values (finite or not)
        self._min_possible = float(_MAPPING.min_possible)
        self.positive = DenseCounts()
        self.negative = DenseCounts()
        self.zero_count = 0
        self.fine = DenseCounts()
        self.fine_exp: int | None = None
        self.integral = True  # every finite value so far is an integer
        self.exact: ExactValues | None = ExactValues(exact_limit) if exact_limit else None

    def add(self, values: Floats, *, integers: bool = False) -> None:
        """Count ``values`` (no NaN); ``integers``: they come from an integer column (all integral)."""
        if values.size == 0:
            return
        self.seen += values.size
        low, high = float(values.min()), float(values.max())
        self.min = min(self.min, low)
        self.max = max(self.max, high)
        if not (math.isfinite(low) and math.isfinite(high)):
            values = values[np.isfinite(values)]
            if values.size == 0:
                return
            low, high = float(values.min()), float(values.max())
        n_b = values.size
        mean_b = float(values.mean())
        deviations = values - mean_b
        m2_b = float(np.einsum("i,i->", deviations, deviations))  # not np.dot: BLAS threads spin
        total = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / total
        self.m2 += m2_b + delta * delta * self.count * n_b / total
        self.count = total
        if self.integral and not integers and not np.array_equal(values, np.floor(values)):
            self.integral = False
        if self.exact is not None and not self.exact.add(values):
            self.exact = None
        self._add_sketch(values, low, high)
        self._add_fine(values, low, high)

    def _add_sketch(self, values: Floats, low: float, high: float) -> None:
        if low > self._min_possible:  # the common all-positive case: no masks, no copies
            self.positive.add(_sketch_keys(values))
            return
        positive = values[values > self._min_possible] if high > self._min_possible else values[:0]
        negative = -values[values < -self._min_possible]
        self.zero_count += values.size - positive.size - negative.size
        for store, part in ((self.positive, positive), (self.negative, negative)):
            if part.size:
                store.add(_sketch_keys(part))

    def _add_fine(self, values: Floats, low: float, high: float) -> None:
        magnitude = max(abs(low), abs(high))
        # Keys stay below 2**52 in magnitude (exact in float64 and int64).
        floor_exp = (math.frexp(magnitude)[1] - 52) if magnitude > 0 else -1074
        if self.fine_exp is None:
            spread = high - low
            if spread > 0:
                exp = math.frexp(spread / FINE_BINS)[1]
            else:
                exp = (math.frexp(magnitude)[1] - 20) if magnitude > 0 else 0
            self.fine_exp = max(exp, floor_exp)
        elif floor_exp > self.fine_exp:
            self.fine.coarsen(floor_exp - self.fine_exp)
            self.fine_exp = floor_exp
        scaled = np.ldexp(values, -self.fine_exp)
        np.floor(scaled, out=scaled)
        keys = scaled.astype(np.int64)
        # ldexp and floor are exact and monotonic: the keys' bounds are those of low and high.
        first = math.floor(math.ldexp(low, -self.fine_exp))
        last = math.floor(math.ldexp(high, -self.fine_exp))
        # Coarsen before counting when the keys spread far past the bins (a batch of much
        # larger values than the first's): the same bins as counting then coarsening, without
        # a count array the size of that spread.
        if self.fine.span:
            first_all = min(first, self.fine.offset)
            last_all = max(last, self.fine.offset + self.fine.span - 1)
        else:
            first_all, last_all = first, last
        shift = 0
        while (last_all >> shift) - (first_all >> shift) + 1 > FINE_BINS:
            shift += 1
        if shift:
            self.fine.coarsen(shift)
            self.fine_exp += shift
            keys >>= shift
            first, last = first >> shift, last >> shift
        self.fine.add(keys, first, last)
        while self.fine.span > FINE_BINS:
            self.fine.coarsen(1)
            self.fine_exp += 1

    def merge(self, other: NumericAccumulator) -> None:
        self.integral = self.integral and other.integral
        if self.exact is not None and (
            other.exact is None or not self.exact.add_counts(other.exact.values, other.exact.counts)
        ):
            self.exact = None
        self.seen += other.seen
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        if other.count:
            total = self.count + other.count
            delta = other.mean - self.mean
            self.mean += delta * other.count / total
            self.m2 += other.m2 + delta * delta * self.count * other.count / total
            self.count = total
        self.zero_count += other.zero_count
        self.positive.add_counts(other.positive.offset, other.positive.counts)
        self.negative.add_counts(other.negative.offset, other.negative.counts)
        if other.fine_exp is not None:
            if self.fine_exp is None:
                self.fine_exp, self.fine = other.fine_exp, DenseCounts()
            theirs = DenseCounts()
            theirs.add_counts(other.fine.offset, other.fine.counts)
            exp = max(self.fine_exp, other.fine_exp)
            self.fine.coarsen(exp - self.fine_exp)
            theirs.coarsen(exp - other.fine_exp)
            self.fine.add_counts(theirs.offset, theirs.counts)
            self.fine_exp = exp
            while self.fine.span > FINE_BINS:
                self.fine.coarsen(1)
                self.fine_exp += 1

    def sketch(self) -> BaseDDSketch:
        """The DDSketch of the finite values (``ddsketch``'s own class, mergeable)."""
        stores = []
        for counts in (self.positive, self.negative):
            store = DenseStore()
            for index in np.flatnonzero(counts.counts):
                store.add(int(counts.offset + index), float(counts.counts[index]))
            stores.append(store)
        return BaseDDSketch(_MAPPING, stores[0], stores[1], float(self.zero_count))

    def _finite_extremes(self) -> tuple[float, float]:
        if (math.isfinite(self.min) and math.isfinite(self.max)) or self.fine_exp is None:
            return self.min, self.max
        width = math.ldexp(1.0, self.fine_exp)
        nonzero = np.flatnonzero(self.fine.counts)
        low = self.min if math.isfinite(self.min) else (self.fine.offset + int(nonzero[0])) * width
        high = self.max if math.isfinite(self.max) else (self.fine.offset + int(nonzero[-1]) + 1) * width
        return low, high

    def histogram(self) -> tuple[tuple[float, ...], tuple[int, ...]]:
        low, high = self._finite_extremes()
        if low == high:
            low, high = low - 0.5, high + 0.5
        edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
        if self.exact is not None:
            exact, _ = np.histogram(self.exact.values, bins=edges, weights=self.exact.counts)
            return tuple(float(e) for e in edges), tuple(int(c) for c in exact)
        if self.fine_exp is None or not self.fine.span:
            return tuple(float(e) for e in edges), (0,) * HISTOGRAM_BINS
        width = math.ldexp(1.0, self.fine_exp)
        nonzero = np.flatnonzero(self.fine.counts)
        fine_counts = self.fine.counts[nonzero].astype(np.float64)
        lower = (nonzero + self.fine.offset).astype(np.float64) * width
        start = np.maximum(lower, low)
        index = _bin_index(start, edges)
        if self.integral and width <= 1.0:
            # Every value sits on its fine bin's lower edge: the assignment is exact.
            counts: Floats = np.bincount(index, weights=fine_counts, minlength=HISTOGRAM_BINS).astype(np.float64)
        else:
            # Spread a fine bin straddling a final edge in proportion to the overlap.
            stop = np.minimum(lower + width, high)
            span = stop - start
            cut = edges[np.minimum(index + 1, HISTOGRAM_BINS)]
            below = np.where(
                (span > 0) & (index < HISTOGRAM_BINS - 1),
                np.clip((cut - start) / np.where(span > 0, span, 1.0), 0.0, 1.0),
                1.0,
            )
            counts = np.bincount(index, weights=fine_counts * below, minlength=HISTOGRAM_BINS).astype(np.float64)
            upper = np.minimum(index + 1, HISTOGRAM_BINS - 1)
            counts += np.bincount(upper, weights=fine_counts * (1.0 - below), minlength=HISTOGRAM_BINS)
        return tuple(float(e) for e in edges), _round_counts(counts, int(self.fine.counts.sum()))

    def result(self) -> NumericStats | None:
        """The column's statistics (``None`` when it had no non-null value)."""
        if self.seen == 0:
            return None
        sketch = self.sketch()
        exact = self.exact if self.count else None
        if exact is not None:
            quantiles = tuple((q, exact.quantile(q)) for q in QUANTILES)
        else:
            quantiles = tuple(
                (q, float(sketch.get_quantile_value(q) or 0.0) if self.count else math.nan) for q in QUANTILES
            )
        edges, counts = self.histogram() if self.count else ((), ())
        std = math.sqrt(self.m2 / self.count) if self.count else math.nan
        return NumericStats(
            min=self.min,
            max=self.max,
            mean=self.mean if self.count else math.nan,
            std=std,
            quantiles=quantiles,
            histogram_edges=edges,
            histogram_counts=counts,
            quantile_relative_error=0.0 if exact is not None else RELATIVE_ACCURACY,
            count=self.count,
            sketch=self._state(),
        )

    def _state(self) -> dict[str, Any]:
        """Everything :meth:`restore` needs, in JSON form (the DDSketch part as older files had it)."""
        fine = None
        if self.fine_exp is not None:
            fine = {"exponent": self.fine_exp, "offset": self.fine.offset, "counts": pack(self.fine.counts)}
        exact = None
        if self.exact is not None:
            exact = {"values": pack(self.exact.values), "counts": pack(self.exact.counts)}
        return {
            "relative_accuracy": RELATIVE_ACCURACY,
            "zero_count": self.zero_count,
            "positive": {"offset": self.positive.offset, "counts": self.positive.counts.tolist()},
            "negative": {"offset": self.negative.offset, "counts": self.negative.counts.tolist()},
            "m2": self.m2 if math.isfinite(self.m2) else str(self.m2),
            "integral": self.integral,
            "fine_histogram": fine,
            "exact_values": exact,
        }

    @classmethod
    def restore(cls, stats: NumericStats, seen: int) -> NumericAccumulator:
        """The accumulator that produced ``stats`` (``seen``: its non-null values).

        Raises:
            ProfileMergeError: ``stats`` predates mergeable profiles (no fine histogram kept).
        """
        state: Mapping[str, Any] = stats.sketch
        if "fine_histogram" not in state:
            raise ProfileMergeError("the profile keeps no fine histogram (written before profiles were mergeable)")
        if state.get("relative_accuracy") != RELATIVE_ACCURACY:
            raise ProfileMergeError(
                f"sketch relative accuracy {state.get('relative_accuracy')} is not {RELATIVE_ACCURACY}"
            )
        accumulator = cls(EXACT_VALUES)
        accumulator.seen = seen
        accumulator.count = stats.count
        accumulator.min, accumulator.max = stats.min, stats.max
        if stats.count:
            accumulator.mean, accumulator.m2 = stats.mean, float(state["m2"])
        accumulator.zero_count = int(state["zero_count"])
        for store, name in ((accumulator.positive, "positive"), (accumulator.negative, "negative")):
            store.add_counts(int(state[name]["offset"]), np.asarray(state[name]["counts"], dtype=np.int64))
        accumulator.integral = bool(state["integral"])
        fine = state["fine_histogram"]
        if fine is not None:
            accumulator.fine_exp = int(fine["exponent"])
            accumulator.fine.add_counts(int(fine["offset"]), unpack(fine["counts"], np.int64))
        exact = state.get("exact_values")
        if exact is None:
            accumulator.exact = None
        elif accumulator.exact is not None:
            accumulator.exact.values = unpack(exact["values"], np.float64)
            accumulator.exact.counts = unpack(exact["counts"], np.int64)
        return accumulator


def _sketch_keys(values: Floats) -> Ints:
    """ddsketch keys ``ceil(log2(v) * multiplier)`` of positive values (in place on one temporary)."""
    keys = np.log2(values)
    keys *= _KEY_MULTIPLIER
    np.ceil(keys, out=keys)
    result: Ints = keys.astype(np.int64)
    return result


def _bin_index(values: Floats, edges: Floats) -> Ints:
    """numpy's histogram bin of each value (last bin closed)."""
    bins = edges.size - 1
    index = np.floor((values - edges[0]) * (bins / (edges[-1] - edges[0])))
    index = np.clip(index, 0, bins - 1).astype(np.int64)
    index[values < edges[index]] -= 1
    index = np.clip(index, 0, bins - 1)
    index[(values >= edges[index + 1]) & (index != bins - 1)] += 1
    result: Ints = index
    return result


def _round_counts(counts: Floats, total: int) -> tuple[int, ...]:
    """Integers summing to ``total`` (largest remainders get the leftovers)."""
    floors = np.floor(counts + 1e-9).astype(np.int64)
    missing = total - int(floors.sum())
    if missing > 0:
        order = np.argsort(-(counts - floors), kind="stable")[:missing]
        floors[order] += 1
    return tuple(int(c) for c in floors)
