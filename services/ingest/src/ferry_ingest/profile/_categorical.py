"""Categorical column statistics: exact value counts up to a bound, then tracked values and HyperLogLog."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferry_ingest.profile._results import TOP_VALUES, CategoricalStats, Ints

__all__ = ["CategoricalAccumulator"]


class _HyperLogLog:
    """HyperLogLog (precision 14) over blake2b hashes; mergeable by register maximum."""

    P = 14
    M = 1 << P

    def __init__(self) -> None:
        self.registers = np.zeros(self.M, dtype=np.uint8)

    def add(self, values: Iterable[object]) -> None:
        hashes = np.fromiter(
            (int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8).digest(), "big") for v in values),
            dtype=np.uint64,
        )
        if hashes.size == 0:
            return
        index = (hashes >> np.uint64(64 - self.P)).astype(np.int64)
        rest = (hashes << np.uint64(self.P)) | np.uint64(1 << (self.P - 1))
        # Position of the first 1 bit of the remaining 50 bits (1-based).
        rank = 64 - np.floor(np.log2(rest.astype(np.float64))).astype(np.int64)
        np.maximum.at(self.registers, index, np.clip(rank, 1, 64 - self.P + 1).astype(np.uint8))

    def merge(self, other: _HyperLogLog) -> None:
        np.maximum(self.registers, other.registers, out=self.registers)

    def estimate(self) -> int:
        m = float(self.M)
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / float(np.sum(np.ldexp(1.0, -self.registers.astype(np.int64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))
        return round(raw)


class CategoricalAccumulator:
    """Exact value counts up to ``max_distinct`` values, then tracked values only."""

    def __init__(self, max_distinct: int, value_type: pa.DataType) -> None:
        self.max_distinct = max_distinct
        self.value_type = value_type
        self.counts: dict[Any, int] = {}
        # Once saturated: the tracked values (fixed from then on) and their counts.
        self.kept: pa.Array | None = None
        self.kept_counts: Ints = np.zeros(0, dtype=np.int64)
        self.untracked = 0
        self.hll: _HyperLogLog | None = None

    def add(self, array: pa.Array) -> None:
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        if array.null_count == len(array):
            return
        pairs = pc.value_counts(array.drop_null() if array.null_count else array)
        self._add_pairs(pairs.field("values"), pairs.field("counts").to_numpy().astype(np.int64))

    def _add_pairs(self, values: pa.Array, counts: Ints) -> None:
        if self.kept is None:
            table = self.counts
            for value, count in zip(values.to_pylist(), counts.tolist(), strict=True):
                table[value] = table.get(value, 0) + count
            if len(table) > self.max_distinct:
                self._saturate()
            return
        index = pc.index_in(values, value_set=self.kept).to_numpy(zero_copy_only=False)
        known = ~np.isnan(index) if index.dtype.kind == "f" else np.ones(index.size, dtype=bool)
        np.add.at(self.kept_counts, index[known].astype(np.int64), counts[known])
        if not known.all():
            self.untracked += int(counts[~known].sum())
            assert self.hll is not None
            self.hll.add(values.filter(pa.array(~known)).to_pylist())

    def _saturate(self) -> None:
        self.hll = _HyperLogLog()
        self.hll.add(self.counts)
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], _text(item[0])))
        kept = ranked[: self.max_distinct]
        self.untracked += sum(count for _, count in ranked[self.max_distinct :])
        self.kept = pa.array([value for value, _ in kept], type=self.value_type)
        self.kept_counts = np.array([count for _, count in kept], dtype=np.int64)
        self.counts = {}

    def tracked(self) -> dict[Any, int]:
        if self.kept is None:
            return self.counts
        return dict(zip(self.kept.to_pylist(), self.kept_counts.tolist(), strict=True))

    def merge(self, other: CategoricalAccumulator) -> None:
        theirs = other.tracked()
        if other.kept is not None:
            if self.kept is None:
                self._saturate()
            assert self.hll is not None and other.hll is not None
            self.hll.merge(other.hll)
            self.untracked += other.untracked
        values = pa.array(list(theirs), type=self.value_type)
        self._add_pairs(values, np.array(list(theirs.values()), dtype=np.int64))

    def result(self) -> CategoricalStats:
        ranked = sorted(self.tracked().items(), key=lambda item: (-item[1], _text(item[0])))
        top = tuple((_text(value), count) for value, count in ranked[:TOP_VALUES])
        if self.kept is not None:
            assert self.hll is not None
            distinct = max(self.hll.estimate(), len(self.kept))
            return CategoricalStats(distinct, top, distinct_exact=False, untracked_count=self.untracked)
        return CategoricalStats(len(self.counts), top)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
