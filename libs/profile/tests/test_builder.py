"""ProfileBuilder: the statistics of one streaming pass, within their stated error."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from ferry_profile import Profile, ProfileBuilder

ProfileOf = Callable[..., Profile]  # the conftest fixture


def test_continuous_columns_use_the_sketch_within_its_stated_error(profile_of: ProfileOf) -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.lognormal(3, 1, 300_000), -rng.exponential(5, 50_000), np.zeros(1000)])
    rng.shuffle(values)
    column = profile_of(pa.table({"v": values})).column("v")
    numeric = column.numeric
    assert numeric is not None and numeric.quantile_relative_error == 0.01
    assert (numeric.min, numeric.max, numeric.count) == (values.min(), values.max(), len(values))
    assert math.isclose(numeric.mean, values.mean(), rel_tol=1e-12)
    assert math.isclose(numeric.std, values.std(), rel_tol=1e-9)
    ordered = np.sort(values)
    for q, value in numeric.quantiles:
        rank = q * (len(values) - 1)
        low, high = ordered[math.floor(rank)], ordered[math.ceil(rank)]
        bound = 0.01 * max(abs(low), abs(high)) + 1e-12
        assert low - bound <= value <= high + bound, (q, value, low, high)
    counts, edges = np.histogram(values, bins=20)
    np.testing.assert_allclose(numeric.histogram_edges, edges)
    assert sum(numeric.histogram_counts) == len(values)
    assert np.abs(np.array(numeric.histogram_counts) - counts).max() <= 0.001 * len(values)


def test_integer_histograms_are_exact_even_with_many_distinct_values(profile_of: ProfileOf) -> None:
    values = np.random.default_rng(1).integers(-5_000, 5_000, 200_000)
    numeric = profile_of(pa.table({"n": values})).column("n").numeric
    assert numeric is not None and numeric.quantile_relative_error == 0.01  # > 4,096 distinct: the sketch
    assert list(numeric.histogram_counts) == list(np.histogram(values, bins=20)[0])


def test_few_distinct_values_give_numpys_exact_quantiles(profile_of: ProfileOf) -> None:
    values = np.random.default_rng(2).normal(0, 1, 4096).round(6)
    numeric = profile_of(pa.table({"x": np.tile(values, 3)}), batch_rows=1000).column("x").numeric
    assert numeric is not None and numeric.quantile_relative_error == 0.0
    for q, value in numeric.quantiles:
        assert value == np.quantile(np.tile(values, 3), q)
    assert list(numeric.histogram_counts) == list(np.histogram(np.tile(values, 3), bins=20)[0])


def test_nulls_nan_infinities_and_constant_columns(profile_of: ProfileOf) -> None:
    table = pa.table(
        {
            "x": pa.array([1.0, None, float("nan"), 3.0, 5.0, float("inf")]),
            "c": pa.array([7, 7, 7, 7, 7, 7]),
            "s": pa.array(["a", None, "b", "a", None, None]),
            "t": pa.array([1, 2, None, 4, 5, 6], pa.timestamp("s")),
        }
    )
    profile = profile_of(table)
    x = profile.column("x")
    assert x.null_count == 2 and x.numeric is not None
    assert x.numeric.mean == 3.0 and x.numeric.count == 3 and x.numeric.max == math.inf
    constant = profile.column("c").numeric
    assert constant is not None and constant.std == 0.0 and sum(constant.histogram_counts) == 6
    assert list(constant.histogram_counts) == list(np.histogram([7] * 6, bins=20)[0])
    s = profile.column("s")
    assert s.null_count == 3 and s.categorical is not None
    assert s.categorical.top_values == (("a", 2), ("b", 1)) and s.categorical.distinct_count == 2
    t = profile.column("t")
    assert t.null_count == 1 and t.numeric is None and t.categorical is None


def test_booleans_and_dictionaries_are_categorical(profile_of: ProfileOf) -> None:
    table = pa.table(
        {
            "b": pa.array([True, False, True, None]),
            "d": pa.array(["x", "y", "x", "x"]).dictionary_encode(),
        }
    )
    profile = profile_of(table)
    assert profile.column("b").categorical is not None
    assert profile.column("b").categorical.top_values == (("true", 2), ("false", 1))
    assert profile.column("d").categorical is not None
    assert profile.column("d").categorical.top_values == (("x", 3), ("y", 1))


def test_high_cardinality_columns_saturate_with_exact_counts_for_kept_values(profile_of: ProfileOf) -> None:
    # Values frequent from the start stay tracked (and exact) after the column saturates.
    values = ["hot", "warm"] * 300 + ["hot"] * 200 + [f"id-{i}" for i in range(20_000)] + ["hot"] * 10
    column = profile_of(pa.table({"s": values}), batch_rows=4096, max_distinct=1000).column("s")
    categorical = column.categorical
    assert categorical is not None and not categorical.distinct_exact
    assert abs(categorical.distinct_count - 20_002) / 20_002 < 3 * 0.0081  # 3 standard errors of the HLL
    top = dict(categorical.top_values)
    assert top["hot"] == 510 and top["warm"] == 300
    assert categorical.untracked_count > 0


def test_builders_merge_into_the_profile_of_all_rows(profile_of: ProfileOf) -> None:
    rng = np.random.default_rng(5)
    table = pa.table({"x": rng.normal(10, 2, 100_000), "k": rng.choice(["a", "b", "c"], 100_000)})
    whole = profile_of(table)
    left, right = ProfileBuilder(table.schema), ProfileBuilder(table.schema)
    left.add(table.slice(0, 30_000))
    right.add(table.slice(30_000))
    left.merge(right)
    merged = left.result()
    a, b = whole.column("x").numeric, merged.column("x").numeric
    assert a is not None and b is not None
    assert math.isclose(a.mean, b.mean, rel_tol=1e-12) and math.isclose(a.std, b.std, rel_tol=1e-9)
    assert a.quantiles == b.quantiles and a.histogram_counts == b.histogram_counts
    assert whole.column("k") == merged.column("k")


def test_integer_columns_profile_like_the_same_values_as_floats() -> None:
    # Integer columns skip the integrality test and the fine histogram takes its key
    # bounds from the batch's extremes: the same statistics, sketch state included.
    rng = np.random.default_rng(11)
    batches = [rng.integers(-50, 50, 20_000), rng.integers(0, 10**9, 20_000), rng.integers(-(10**12), 7, 20_000)]
    as_ints, as_floats = ProfileBuilder(pa.schema({"v": pa.int64()})), ProfileBuilder(pa.schema({"v": pa.float64()}))
    for values in batches:
        as_ints.add(pa.table({"v": values}))
        as_floats.add(pa.table({"v": values.astype(np.float64)}))
    ints, floats = as_ints.result().column("v").numeric, as_floats.result().column("v").numeric
    assert ints is not None and floats is not None
    assert ints == floats and ints.sketch["integral"] is True
    small = ProfileBuilder(pa.schema({"v": pa.float64()}))
    small.add(pa.table({"v": [1e-300, 3e-300, 2.5e-300]}))  # keys from subnormal-scaled bounds
    small.add(pa.table({"v": [0.5, 1e-308, 7.25]}))
    numeric = small.result().column("v").numeric
    assert numeric is not None and sum(numeric.histogram_counts) == 6
