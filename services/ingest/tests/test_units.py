"""Plain-Python tests of the profile, recipe, SQL safety and store pieces."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pyarrow as pa
import pytest

from ferry_common.errors import InvalidArgument
from ferry_ingest.profile import Profile, ProfileBuilder
from ferry_ingest.recipe import Filter, Recipe, Split, SplitPart, content_hash
from ferry_ingest.sql_import import check_query
from ferry_ingest.store.sql import _MIGRATIONS as MIGRATIONS
from ferry_ingest.store.sql import HEAD_REVISION, SqlDatasetStore
from ferry_ingest.transform import allocate


def _profile(table: pa.Table, batch_rows: int = 50_000, **kwargs: int) -> Profile:
    builder = ProfileBuilder(table.schema, **kwargs)
    for batch in table.to_batches(max_chunksize=batch_rows):
        builder.add(batch)
    return builder.result()


def test_continuous_columns_use_the_sketch_within_its_stated_error() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.lognormal(3, 1, 300_000), -rng.exponential(5, 50_000), np.zeros(1000)])
    rng.shuffle(values)
    column = _profile(pa.table({"v": values})).column("v")
    numeric = column.numeric
    assert numeric is not None and numeric.quantile_relative_error == 0.01
    assert (numeric.min, numeric.max) == (values.min(), values.max())
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


def test_integer_histograms_are_exact_even_with_many_distinct_values() -> None:
    values = np.random.default_rng(1).integers(-5_000, 5_000, 200_000)
    numeric = _profile(pa.table({"n": values})).column("n").numeric
    assert numeric is not None and numeric.quantile_relative_error == 0.01  # > 4,096 distinct: the sketch
    assert list(numeric.histogram_counts) == list(np.histogram(values, bins=20)[0])


def test_nulls_nan_and_constant_columns() -> None:
    table = pa.table(
        {
            "x": pa.array([1.0, None, float("nan"), 3.0, 5.0]),
            "c": pa.array([7, 7, 7, 7, 7]),
            "s": pa.array(["a", None, "b", "a", None]),
            "t": pa.array([1, 2, None, 4, 5], pa.timestamp("s")),
        }
    )
    profile = _profile(table)
    x = profile.column("x")
    assert x.null_count == 2 and x.numeric is not None and x.numeric.mean == 3.0
    constant = profile.column("c").numeric
    assert constant is not None and constant.std == 0.0 and sum(constant.histogram_counts) == 5
    assert list(constant.histogram_counts) == list(np.histogram([7] * 5, bins=20)[0])
    s = profile.column("s")
    assert s.null_count == 2 and s.categorical is not None
    assert s.categorical.top_values == (("a", 2), ("b", 1)) and s.categorical.distinct_count == 2
    t = profile.column("t")
    assert t.null_count == 1 and t.numeric is None and t.categorical is None


def test_high_cardinality_columns_saturate_with_exact_counts_for_kept_values() -> None:
    # Values frequent from the start stay tracked (and exact) after the column saturates.
    values = ["hot", "warm"] * 300 + ["hot"] * 200 + [f"id-{i}" for i in range(20_000)] + ["hot"] * 10
    column = _profile(pa.table({"s": values}), batch_rows=4096, max_distinct=1000).column("s")
    categorical = column.categorical
    assert categorical is not None and not categorical.distinct_exact
    assert abs(categorical.distinct_count - 20_002) / 20_002 < 0.03  # HyperLogLog estimate
    top = dict(categorical.top_values)
    assert top["hot"] == 510 and top["warm"] == 300
    assert categorical.untracked_count > 0


def test_profiles_merge_and_round_trip_through_json() -> None:
    rng = np.random.default_rng(5)
    table = pa.table({"x": rng.normal(10, 2, 100_000), "k": rng.choice(["a", "b", "c"], 100_000)})
    whole = _profile(table)
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
    assert Profile.from_json_dict(json.loads(json.dumps(whole.to_json_dict()))) == whole


def test_canonical_recipe_json_and_content_hash_are_stable() -> None:
    recipe = Recipe((Filter("age", "gt", "3"), Split((SplitPart("train", 0.8), SplitPart("test", 0.2)), seed=7)))
    assert recipe.canonical_json() == (
        '{"steps":[{"filter":{"column":"age","operator":"gt","value":"3","values":[]}},'
        '{"split":{"fractions":[{"fraction":0.8,"name":"train"},{"fraction":0.2,"name":"test"}],'
        '"seed":7,"stratify_column":""}}]}'
    )
    assert Recipe.from_json_dict(recipe.to_json_dict()) == recipe
    assert content_hash("ab" * 32, recipe) == content_hash("ab" * 32, Recipe.from_json_dict(recipe.to_json_dict()))
    assert content_hash("ab" * 32, recipe) != content_hash("cd" * 32, recipe)


def test_split_sizes_use_largest_remainders() -> None:
    assert allocate(10, [0.7, 0.2, 0.1]) == [7, 2, 1]
    assert allocate(1001, [0.8, 0.2]) == [801, 200]
    assert allocate(2, [1 / 3, 1 / 3, 1 / 3]) == [1, 1, 0]
    assert sum(allocate(99_991, [0.6, 0.25, 0.15])) == 99_991


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1",
        "  with a as (select 1) select * from a;  ",
        "/* hi */ -- there\n SELECT ';'",
        "select 'x;y'",
        "SELECT $$;$$",
        'SELECT "a;b" FROM t',
    ],
)
def test_select_and_with_queries_pass(query: str) -> None:
    assert check_query(query)


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO t VALUES (1)",
        "SELECT 1; SELECT 2",
        "select 1; drop table t",
        "",
        "  -- nothing\n",
        "VACUUM",
        "(SELECT 1)",
        "COPY t TO '/tmp/x'",
        "SELECT 1;;",
    ],
)
def test_other_statements_are_refused(query: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_query(query)
    assert raised.value.message.startswith("sql.query")


def test_head_revision_matches_the_migration_scripts(tmp_path: pathlib.Path) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION
    store = SqlDatasetStore.open(f"sqlite:///{tmp_path / 'ingest.db'}")
    try:
        assert store.revision() == HEAD_REVISION
    finally:
        store.close()
    SqlDatasetStore.open(f"sqlite:///{tmp_path / 'ingest.db'}").close()  # a second start needs no migration
