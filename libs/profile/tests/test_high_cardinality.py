"""A free-text column (mostly distinct values) profiled as ingest feeds it, checked against pandas."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ferry_profile import HLL_LG_K, TOP_VALUES, Profile, ProfileBuilder

ProfileOf = Callable[..., Profile]  # the conftest fixture
STANDARD_ERROR = 1.04 / math.sqrt(2**HLL_LG_K)
ROWS = 300_000
MAX_DISTINCT = 5_000


def _notes(rows: int, seed: int) -> pa.Table:
    """Free text with nulls, plus 30 recurring phrases of distinct frequencies from the first rows on."""
    rng = np.random.default_rng(seed)
    words = np.array(["late", "refund", "damaged", "door", "size", "gift", "invoice", "weekend", "fragile"])
    text = [
        f"{a} {b} {n}"
        for a, b, n in zip(rng.choice(words, rows), rng.choice(words, rows), rng.integers(0, 10**9, rows), strict=True)
    ]
    # Phrase k appears 400 - 10 k times, spread evenly over the table (so from the first batch on).
    positions = rng.permutation(rows)
    start = 0
    for k in range(30):
        count = 400 - 10 * k
        for position in positions[start : start + count]:
            text[position] = f"recurring phrase {k:02d}"
        start += count
    note = pa.array(text, mask=rng.random(rows) < 0.05)
    kind = pa.array(rng.choice(["a", "b", "c"], rows), mask=rng.random(rows) < 0.01)
    return pa.table({"note": note, "kind": kind})


def _as_ingest_feeds(table: pa.Table, group_rows: int = 65_536, chunk_rows: int = 2_700) -> ProfileBuilder:
    """Row-group tables made of parser-sized chunks (ingest's canonical Parquet writer)."""
    builder = ProfileBuilder(table.schema, max_distinct=MAX_DISTINCT)
    for start in range(0, table.num_rows, group_rows):
        group = table.slice(start, group_rows)
        builder.add(pa.Table.from_batches(group.to_batches(max_chunksize=chunk_rows)))
    return builder


def _check_against_pandas(profile: Profile, table: pa.Table) -> None:
    frame = table.to_pandas()
    for name in ("note", "kind"):
        assert profile.column(name).null_count == int(frame[name].isna().sum())
    counts = frame["note"].value_counts()
    stats = profile.column("note").categorical
    assert stats is not None and not stats.distinct_exact
    distinct = int(frame["note"].nunique())
    assert abs(stats.distinct_count - distinct) <= 3 * STANDARD_ERROR * distinct
    # Every kept value's count is exact, and the phrases seen from the start are the top ones.
    assert len(stats.top_values) == TOP_VALUES
    for value, count in stats.top_values:
        assert count == counts[value], value
    expected = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_VALUES]
    assert list(stats.top_values) == [(value, int(count)) for value, count in expected]
    assert 0 < stats.untracked_count <= int(frame["note"].notna().sum()) - MAX_DISTINCT
    kind = profile.column("kind").categorical
    assert kind is not None and kind.distinct_exact and kind.distinct_count == 3
    assert dict(kind.top_values) == {k: int(v) for k, v in frame["kind"].value_counts().items()}


def test_free_text_column_fed_as_ingest_feeds_it_matches_pandas() -> None:
    table = _notes(ROWS, seed=13)
    _check_against_pandas(_as_ingest_feeds(table).result(), table)


def test_free_text_column_fed_batch_by_batch_matches_pandas(profile_of: ProfileOf) -> None:
    table = _notes(ROWS, seed=14)
    _check_against_pandas(profile_of(table, batch_rows=10_000, max_distinct=MAX_DISTINCT), table)


def test_merged_builders_of_a_free_text_column_match_pandas() -> None:
    table = _notes(ROWS, seed=15)
    first, second = _as_ingest_feeds(table.slice(0, ROWS // 3)), _as_ingest_feeds(table.slice(ROWS // 3))
    first.merge(second)
    _check_against_pandas(first.result(), table)


@pytest.mark.parametrize("value_type", [pa.large_string(), pa.string_view()])
def test_other_string_types_saturate_like_strings(value_type: pa.DataType) -> None:
    table = _notes(60_000, seed=16)
    cast = table.set_column(0, "note", pc.cast(table.column("note"), value_type))
    expected = _as_ingest_feeds(table).result().column("note").categorical
    stats = _as_ingest_feeds(cast).result().column("note").categorical
    assert stats is not None and expected is not None
    assert stats.top_values == expected.top_values and stats.untracked_count == expected.untracked_count
    assert stats.distinct_count == pytest.approx(expected.distinct_count, rel=3 * STANDARD_ERROR)


def test_dictionary_chunks_with_different_dictionaries_are_counted_by_value() -> None:
    first = pa.array(["x", "y", "x", None]).dictionary_encode()
    second = pa.array(["y", "z", "y", "y"]).dictionary_encode()
    column = pa.chunked_array([first, second])
    builder = ProfileBuilder(pa.schema([("d", column.type)]))
    builder.add(pa.table({"d": column}))
    profile = builder.result()
    stats = profile.column("d").categorical
    assert stats is not None and stats.top_values == (("y", 4), ("x", 2), ("z", 1))
    assert profile.column("d").null_count == 1
