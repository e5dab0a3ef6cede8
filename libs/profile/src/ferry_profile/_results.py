"""Profile results and their JSON form (``profile.json``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = [
    "HISTOGRAM_BINS",
    "QUANTILES",
    "RELATIVE_ACCURACY",
    "TOP_VALUES",
    "CategoricalStats",
    "ColumnProfile",
    "Floats",
    "Ints",
    "NumericStats",
    "Profile",
    "ProfileMergeError",
    "column_kind",
]

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_BINS = 20
TOP_VALUES = 20
RELATIVE_ACCURACY = 0.01
_FORMAT = "ferry.profile/v1"

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


class ProfileMergeError(ValueError):
    """Two profiles cannot be merged (different schemas, or one keeps no sketches)."""


def column_kind(type_: pa.DataType) -> str | None:
    """The kind of statistics a column of ``type_`` gets.

    Args:
        type_: an Arrow type.

    Returns:
        ``"numeric"`` (integers, floats, decimals), ``"categorical"`` (strings, booleans,
        dictionaries of those) or ``None`` (only nulls are counted).
    """
    if pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_):
        return "numeric"
    if pa.types.is_dictionary(type_):
        return column_kind(type_.value_type)
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_boolean(type_):
        return "categorical"
    if pa.types.is_string_view(type_):
        return "categorical"
    return None


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class NumericStats:
    """Statistics of a numeric column (nulls and NaN excluded).

    Attributes:
        min: smallest value (may be ``-inf``).
        max: largest value (may be ``inf``).
        mean: mean of the finite values (NaN when there are none).
        std: population standard deviation of the finite values.
        quantiles: ``(q, value)`` pairs for each of :data:`QUANTILES`.
        histogram_edges: :data:`HISTOGRAM_BINS` + 1 equal-width edges from min to max.
        histogram_counts: values per bin (numpy's convention: the last bin is closed).
        quantile_relative_error: 0 when the quantiles are exact, else the DDSketch's bound.
        count: number of finite values.
        sketch: what a merge needs (DDSketch buckets, fine histogram, exact value
            counts) in its JSON form; profiles written before merging was supported
            hold the DDSketch only and cannot be merged.
    """

    min: float
    max: float
    mean: float
    std: float
    quantiles: tuple[tuple[float, float], ...]
    histogram_edges: tuple[float, ...]
    histogram_counts: tuple[int, ...]
    quantile_relative_error: float = RELATIVE_ACCURACY
    count: int = 0
    sketch: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CategoricalStats:
    """Statistics of a categorical column (nulls excluded).

    Attributes:
        distinct_count: distinct values (an HLL estimate when ``distinct_exact`` is false).
        top_values: up to :data:`TOP_VALUES` ``(value, count)`` pairs, most frequent first,
            ties by value.
        distinct_exact: whether ``distinct_count`` is exact.
        untracked_count: values that were only counted as a whole (first seen after the
            column saturated).
        top_values_max_error: how much any count in ``top_values`` may exceed the true
            count (0: exact; non-zero only after a merge of profiles whose frequent-items
            sketches overflowed).
        sketch: what a merge needs (HyperLogLog and frequent-items sketches, base64) in
            its JSON form; empty in profiles written before merging was supported.
    """

    distinct_count: int
    top_values: tuple[tuple[str, int], ...]
    distinct_exact: bool = True
    untracked_count: int = 0
    top_values_max_error: int = 0
    sketch: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ColumnProfile:
    """One column's statistics.

    Attributes:
        name: the column name.
        type: the Arrow type as text (``int64``, ``string``, ...).
        null_count: nulls (and NaN in floating-point columns).
        numeric: set for numeric columns with at least one non-null value.
        categorical: set for categorical columns with at least one non-null value.
    """

    name: str
    type: str
    null_count: int
    numeric: NumericStats | None = None
    categorical: CategoricalStats | None = None


@dataclass(frozen=True)
class Profile:
    """Statistics of a table (a version or one of its splits)."""

    row_count: int
    columns: tuple[ColumnProfile, ...]

    def column(self, name: str) -> ColumnProfile:
        """The column called ``name``.

        Raises:
            KeyError: no such column.
        """
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def to_json_dict(self) -> dict[str, Any]:
        """The ``profile.json`` form (non-finite floats as the strings ``inf``/``-inf``/``nan``)."""
        columns: list[dict[str, Any]] = []
        for col in self.columns:
            entry: dict[str, Any] = {"name": col.name, "type": col.type, "null_count": col.null_count}
            if col.numeric is not None:
                num = col.numeric
                entry["numeric"] = {
                    "min": _f(num.min),
                    "max": _f(num.max),
                    "mean": _f(num.mean),
                    "std": _f(num.std),
                    "count": num.count,
                    "quantiles": [{"quantile": q, "value": _f(v)} for q, v in num.quantiles],
                    "histogram": {"edges": [_f(e) for e in num.histogram_edges], "counts": list(num.histogram_counts)},
                    "quantile_relative_error": num.quantile_relative_error,
                    "sketch": dict(num.sketch),
                }
            if col.categorical is not None:
                cat = col.categorical
                entry["categorical"] = {
                    "distinct_count": cat.distinct_count,
                    "distinct_exact": cat.distinct_exact,
                    "untracked_count": cat.untracked_count,
                    "top_values": [{"value": v, "count": c} for v, c in cat.top_values],
                    "top_values_max_error": cat.top_values_max_error,
                    "sketch": dict(cat.sketch),
                }
            columns.append(entry)
        return {"format": _FORMAT, "row_count": self.row_count, "columns": columns}

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> Profile:
        """Read :meth:`to_json_dict`'s form, including files written by older versions.

        Raises:
            KeyError: a required field is missing.
        """
        columns = []
        for entry in data["columns"]:
            numeric = categorical = None
            if "numeric" in entry:
                num = entry["numeric"]
                sketch = num.get("sketch", {})
                numeric = NumericStats(
                    min=_unf(num["min"]),
                    max=_unf(num["max"]),
                    mean=_unf(num["mean"]),
                    std=_unf(num["std"]),
                    quantiles=tuple((q["quantile"], _unf(q["value"])) for q in num["quantiles"]),
                    histogram_edges=tuple(_unf(e) for e in num["histogram"]["edges"]),
                    histogram_counts=tuple(num["histogram"]["counts"]),
                    quantile_relative_error=num["quantile_relative_error"],
                    count=num["count"] if "count" in num else _sketch_count(sketch),
                    sketch=sketch,
                )
            if "categorical" in entry:
                cat = entry["categorical"]
                categorical = CategoricalStats(
                    distinct_count=cat["distinct_count"],
                    top_values=tuple((v["value"], v["count"]) for v in cat["top_values"]),
                    distinct_exact=cat.get("distinct_exact", True),
                    untracked_count=cat.get("untracked_count", 0),
                    top_values_max_error=cat.get("top_values_max_error", 0),
                    sketch=cat.get("sketch", {}),
                )
            columns.append(ColumnProfile(entry["name"], entry["type"], entry["null_count"], numeric, categorical))
        return cls(row_count=data["row_count"], columns=tuple(columns))


def _sketch_count(sketch: Mapping[str, Any]) -> int:
    """Finite values counted by a stored DDSketch (older files carry no ``count``)."""
    if not sketch:
        return 0
    stores = (sketch.get("positive", {}), sketch.get("negative", {}))
    return int(sketch.get("zero_count", 0)) + sum(int(sum(store.get("counts", []))) for store in stores)


def _f(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _unf(value: float | str) -> float:
    return float(value)
