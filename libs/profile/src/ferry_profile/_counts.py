"""Exact counts behind the numeric statistics: integer keys in a dense array, distinct values."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferry_profile._results import Floats, Ints

__all__ = ["DenseCounts", "ExactValues"]


class DenseCounts:
    """Counts of integer keys in one dense numpy array (keys span a bounded range)."""

    def __init__(self) -> None:
        self.offset = 0
        self.counts: Ints = np.zeros(0, dtype=np.int64)

    def add(self, keys: Ints, low: int | None = None, high: int | None = None) -> None:
        """Count ``keys``; ``low`` and ``high``: their smallest and largest, when known."""
        if keys.size == 0:
            return
        if low is None or high is None:
            low, high = int(keys.min()), int(keys.max())
        batch = np.bincount(keys - low, minlength=high - low + 1).astype(np.int64)
        self.add_counts(low, batch)

    def add_counts(self, low: int, batch: Ints) -> None:
        if batch.size == 0:
            return
        if self.counts.size == 0:
            self.offset, self.counts = low, batch.copy()
            return
        new_low = min(self.offset, low)
        new_high = max(self.offset + self.counts.size, low + batch.size)
        if new_low != self.offset or new_high != self.offset + self.counts.size:
            grown = np.zeros(new_high - new_low, dtype=np.int64)
            grown[self.offset - new_low : self.offset - new_low + self.counts.size] = self.counts
            self.offset, self.counts = new_low, grown
        self.counts[low - self.offset : low - self.offset + batch.size] += batch

    def coarsen(self, shift: int) -> None:
        """Merge keys ``k`` into ``k >> shift`` (floor division by ``2**shift``)."""
        if shift <= 0 or self.counts.size == 0:
            return
        keys = np.arange(self.offset, self.offset + self.counts.size, dtype=np.int64) >> shift
        low = int(keys[0])
        self.offset, self.counts = low, np.bincount(keys - low, weights=self.counts).astype(np.int64)

    @property
    def span(self) -> int:
        return int(self.counts.size)


class ExactValues:
    """Every distinct finite value and its count, while there are at most ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.values: Floats = np.zeros(0, dtype=np.float64)
        self.counts: Ints = np.zeros(0, dtype=np.int64)

    def add(self, values: Floats) -> bool:
        """Count ``values``; False once there are too many distinct values (then drop me)."""
        head = values[: 2 * self.limit]
        if values.size > head.size and np.unique(head).size > self.limit:
            return False  # clearly too many: skip hashing the whole batch
        pairs = pc.value_counts(pa.array(values))
        if len(pairs) > self.limit:
            return False
        batch_values = pairs.field("values").to_numpy(zero_copy_only=False)
        batch_counts = pairs.field("counts").to_numpy(zero_copy_only=False).astype(np.int64)
        return self.add_counts(batch_values, batch_counts)

    def add_counts(self, values: Floats, counts: Ints) -> bool:
        merged, inverse = np.unique(np.concatenate([self.values, values]), return_inverse=True)
        if merged.size > self.limit:
            return False
        self.counts = np.bincount(inverse, weights=np.concatenate([self.counts, counts]), minlength=merged.size).astype(
            np.int64
        )
        self.values = merged
        return True

    def quantile(self, q: float) -> float:
        """numpy's default (linear) quantile of the counted values."""
        position = q * (int(self.counts.sum()) - 1)
        cumulative = np.cumsum(self.counts)
        low = self.values[np.searchsorted(cumulative, math.floor(position), side="right")]
        high = self.values[np.searchsorted(cumulative, math.ceil(position), side="right")]
        return float(low + (high - low) * (position - math.floor(position)))
