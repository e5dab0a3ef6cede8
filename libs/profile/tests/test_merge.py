"""merge_profiles(a, b) is the profile of a's and b's rows together.

Exact statistics exactly (mean and std up to rounding); quantiles, histograms, distinct
counts and top values within their stated error.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

from ferry_profile import (
    FREQUENT_ITEMS_LG_K,
    ColumnProfile,
    Profile,
    ProfileBuilder,
    ProfileMergeError,
    merge_profiles,
)

ProfileOf = Callable[..., Profile]  # the conftest fixture


def _halves(profile_of: ProfileOf, table: pa.Table, at: int, **kwargs: int) -> tuple[Profile, Profile]:
    """The profile of ``table`` and the merge of the profiles of its two parts."""
    whole = profile_of(table, **kwargs)
    merged = merge_profiles(profile_of(table.slice(0, at), **kwargs), profile_of(table.slice(at), **kwargs))
    return whole, merged


def _assert_exact_stats_equal(whole: ColumnProfile, merged: ColumnProfile) -> None:
    assert (merged.name, merged.type, merged.null_count) == (whole.name, whole.type, whole.null_count)
    a, b = whole.numeric, merged.numeric
    if a is None or b is None:
        assert a is b
        return
    assert (b.min, b.max, b.count) == (a.min, a.max, a.count)
    assert math.isclose(b.mean, a.mean, rel_tol=1e-12, abs_tol=1e-12)
    assert math.isclose(b.std, a.std, rel_tol=1e-9, abs_tol=1e-12)
    assert b.histogram_edges == pytest.approx(a.histogram_edges, rel=1e-12)


def test_continuous_columns_merge_within_the_sketch_error(profile_of: ProfileOf) -> None:
    rng = np.random.default_rng(11)
    values = np.concatenate([rng.lognormal(2, 1, 150_000), -rng.exponential(3, 30_000), [np.nan] * 500])
    rng.shuffle(values)
    values[::1000] = np.inf  # infinities count toward min and max only
    whole, merged = _halves(profile_of, pa.table({"v": values}), 70_001)
    _assert_exact_stats_equal(whole.columns[0], merged.columns[0])
    numeric = merged.column("v").numeric
    assert numeric is not None and numeric.quantile_relative_error == 0.01
    finite = np.sort(values[np.isfinite(values)])
    for q, value in numeric.quantiles:
        rank = q * (finite.size - 1)
        low, high = finite[math.floor(rank)], finite[math.ceil(rank)]
        bound = 0.01 * max(abs(low), abs(high)) + 1e-12
        assert low - bound <= value <= high + bound, (q, value, low, high)
    expected, _ = np.histogram(finite, bins=np.asarray(numeric.histogram_edges))
    assert sum(numeric.histogram_counts) == finite.size
    # Two fine bins (of at most 16,384 over the range) per final count at most.
    assert np.abs(np.array(numeric.histogram_counts) - expected).max() <= 0.002 * finite.size


def test_merging_profiles_equals_merging_builders(profile_of: ProfileOf) -> None:
    rng = np.random.default_rng(12)
    table = pa.table({"x": rng.normal(0, 1, 60_000), "n": rng.integers(-20_000, 20_000, 60_000)})
    first, second = ProfileBuilder(table.schema), ProfileBuilder(table.schema)
    first.add(table.slice(0, 25_000))
    second.add(table.slice(25_000))
    profiles = merge_profiles(first.result(), second.result())
    first.merge(second)
    builders = first.result()
    for a, b in zip(profiles.columns, builders.columns, strict=True):
        assert a.numeric is not None and b.numeric is not None
        assert (a.numeric.quantiles, a.numeric.histogram_counts) == (b.numeric.quantiles, b.numeric.histogram_counts)
        assert a.numeric.sketch == b.numeric.sketch


def test_few_distinct_values_stay_exact_through_a_merge(profile_of: ProfileOf) -> None:
    rng = np.random.default_rng(13)
    table = pa.table(
        {
            "age": pa.array(rng.integers(18, 90, 20_000)),
            "score": pa.array(rng.normal(0, 1, 500).round(3)[rng.integers(0, 500, 20_000)]),
            "city": pa.array(rng.choice(["paris", "lyon", "nantes", "lille", "nice"], 20_000)),
            "flag": pa.array(rng.integers(0, 2, 20_000) == 1),
        }
    )
    whole, merged = _halves(profile_of, table, 6_000, batch_rows=4096)
    for a, b in zip(whole.columns, merged.columns, strict=True):
        _assert_exact_stats_equal(a, b)
        if a.numeric is not None and b.numeric is not None:
            assert b.numeric.quantile_relative_error == 0.0
            assert (b.numeric.quantiles, b.numeric.histogram_counts) == (
                a.numeric.quantiles,
                a.numeric.histogram_counts,
            )
        else:
            assert a.categorical is not None and b.categorical is not None
            assert b.categorical.distinct_exact and b.categorical.top_values_max_error == 0
            assert (b.categorical.distinct_count, b.categorical.top_values) == (
                a.categorical.distinct_count,
                a.categorical.top_values,
            )


def test_exact_values_give_way_to_the_sketch_past_4096_distinct(profile_of: ProfileOf) -> None:
    values = np.arange(6_000, dtype=np.float64) / 7  # each half alone has 3,000 distinct values
    first, second = profile_of(pa.table({"x": values[:3000]})), profile_of(pa.table({"x": values[3000:]}))
    assert first.column("x").numeric is not None and first.column("x").numeric.quantile_relative_error == 0.0
    numeric = merge_profiles(first, second).column("x").numeric
    assert numeric is not None and numeric.quantile_relative_error == 0.01 and numeric.count == 6_000
    for q, value in numeric.quantiles:
        assert abs(value - np.quantile(values, q)) <= 0.01 * abs(np.quantile(values, q)) + 1 / 7


def test_high_cardinality_categories_merge_within_the_stated_errors(profile_of: ProfileOf) -> None:
    rng = np.random.default_rng(14)
    # Heavy hitters over a long tail of 30,000 values; the parts saturate at 10,000.
    heavy = rng.choice(["alpha", "beta", "gamma"], 40_000, p=[0.5, 0.3, 0.2])
    tail = np.array([f"id-{i}" for i in rng.integers(0, 30_000, 60_000)])
    values = np.concatenate([heavy, tail])
    rng.shuffle(values)
    whole, merged = _halves(profile_of, pa.table({"s": values}), 45_000, max_distinct=10_000)
    _assert_exact_stats_equal(whole.columns[0], merged.columns[0])
    stats = merged.column("s").categorical
    assert stats is not None and not stats.distinct_exact
    true_distinct = len(set(values.tolist()))
    assert abs(stats.distinct_count - true_distinct) / true_distinct <= 3 * 0.0081  # 3 HLL standard errors
    truth = Counter(values.tolist())
    assert stats.top_values_max_error <= 3.5 / 2**FREQUENT_ITEMS_LG_K * len(values)
    assert [v for v, _ in stats.top_values[:3]] == ["alpha", "beta", "gamma"]
    for value, count in stats.top_values:
        assert truth[value] <= count <= truth[value] + stats.top_values_max_error


def test_a_column_without_values_on_one_side_merges(profile_of: ProfileOf) -> None:
    table = pa.table({"x": pa.array([None, None, 1.5, 2.5]), "s": pa.array([None, None, "a", "b"])})
    whole, merged = _halves(profile_of, table, 2)
    assert merged == whole


def test_different_schemas_are_refused(profile_of: ProfileOf) -> None:
    first = profile_of(pa.table({"x": [1.0, 2.0]}))
    with pytest.raises(ProfileMergeError, match="different schemas"):
        merge_profiles(first, profile_of(pa.table({"x": [1, 2]})))
    with pytest.raises(ProfileMergeError, match="different schemas"):
        merge_profiles(first, profile_of(pa.table({"y": [1.0, 2.0]})))
