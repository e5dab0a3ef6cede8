"""Accumulates a :class:`Profile` batch by batch (columns in parallel)."""

from __future__ import annotations

import concurrent.futures
import os
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferry_profile._categorical import CategoricalAccumulator
from ferry_profile._numeric import EXACT_VALUES, NumericAccumulator
from ferry_profile._results import ColumnProfile, Floats, Profile, ProfileMergeError, column_kind

__all__ = ["ProfileBuilder"]


class _ColumnAccumulator:
    def __init__(self, field_: pa.Field, max_distinct: int) -> None:
        self.name = field_.name
        self.type = field_.type
        self.kind = column_kind(field_.type)
        self.null_count = 0
        self.numeric = NumericAccumulator(EXACT_VALUES) if self.kind == "numeric" else None
        value_type = field_.type.value_type if pa.types.is_dictionary(field_.type) else field_.type
        self.categorical = CategoricalAccumulator(max_distinct, value_type) if self.kind == "categorical" else None

    def add(self, array: pa.Array | pa.ChunkedArray) -> None:
        self.null_count += array.null_count
        if self.numeric is not None:
            values = _as_floats(array)
            if pa.types.is_integer(array.type):  # no NaN possible, every value integral
                self.numeric.add(values, integers=True)
                return
            nan = np.isnan(values)
            if nan.any():
                self.null_count += int(nan.sum())
                values = values[~nan]
            self.numeric.add(values)
        elif self.categorical is not None:
            self.categorical.add(array)

    def merge(self, other: _ColumnAccumulator) -> None:
        self.null_count += other.null_count
        if self.numeric is not None and other.numeric is not None:
            self.numeric.merge(other.numeric)
        if self.categorical is not None and other.categorical is not None:
            self.categorical.merge(other.categorical)

    def result(self) -> ColumnProfile:
        return ColumnProfile(
            name=self.name,
            type=str(self.type),
            null_count=self.null_count,
            numeric=self.numeric.result() if self.numeric is not None else None,
            categorical=self.categorical.result() if self.categorical is not None else None,
        )


def _as_floats(array: pa.Array | pa.ChunkedArray) -> Floats:
    if array.null_count:
        array = array.drop_null()
    if pa.types.is_decimal(array.type) or pa.types.is_float16(array.type):
        array = pc.cast(array, pa.float64())
    values: Floats = array.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return values


_EXECUTOR: concurrent.futures.ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            workers = min(4, os.cpu_count() or 1)
            _EXECUTOR = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="profile")
        return _EXECUTOR


def _add_column(accumulator: _ColumnAccumulator, column: pa.Array | pa.ChunkedArray) -> None:
    # A table's column is as many chunks as the parser made blocks (a few thousand rows
    # each): the fixed cost per call (a kernel's set-up, a look-up table of the tracked
    # values) is paid once per column, not once per chunk.
    accumulator.add(column)


class ProfileBuilder:
    """Accumulates a :class:`Profile` batch by batch, in memory bounded per column.

    Args:
        schema: the schema of every batch that will be added.
        max_distinct: distinct values tracked exactly per categorical column.
        parallel: profile the columns of large batches on a small shared thread pool.
    """

    def __init__(self, schema: pa.Schema, max_distinct: int = 65_536, *, parallel: bool = True) -> None:
        self.schema = schema
        self.row_count = 0
        self._columns = [_ColumnAccumulator(f, max_distinct) for f in schema]
        self._parallel = parallel and len(self._columns) > 1

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Add the rows of ``batch`` (same column order as ``schema``).

        Columns are profiled concurrently (numpy and Arrow release the GIL).
        """
        self.row_count += batch.num_rows
        if batch.num_rows == 0:
            return
        work = list(zip(self._columns, batch.columns, strict=True))
        if self._parallel and batch.num_rows >= 8192:
            for future in [_executor().submit(_add_column, a, c) for a, c in work]:
                future.result()
        else:
            for accumulator, column in work:
                _add_column(accumulator, column)

    def merge(self, other: ProfileBuilder) -> None:
        """Fold ``other`` (built over the same schema) into this builder.

        Exact value counts are merged as they are, so the result is the profile of
        both builders' rows (see :func:`merge_profiles` for finished profiles).

        Raises:
            ProfileMergeError: the schemas differ.
        """
        if not other.schema.equals(self.schema):
            raise ProfileMergeError(f"cannot merge builders of different schemas: {other.schema} and {self.schema}")
        self.row_count += other.row_count
        for mine, theirs in zip(self._columns, other._columns, strict=True):
            mine.merge(theirs)

    def result(self) -> Profile:
        """The profile of every row added (or merged) so far; the builder stays usable."""
        return Profile(row_count=self.row_count, columns=tuple(c.result() for c in self._columns))
