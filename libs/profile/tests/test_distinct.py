"""Distinct counts: exact up to max_distinct, then an HLL estimate within its stated error."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

from ferry_profile import HLL_LG_K, Profile, merge_profiles

ProfileOf = Callable[..., Profile]  # the conftest fixture
# HLL's relative standard error, 1.04 / sqrt(2**lg_k): about 0.8 % (stated in the README).
STANDARD_ERROR = 1.04 / math.sqrt(2**HLL_LG_K)


def _ids(start: int, stop: int, repeat: int = 2) -> pa.Table:
    values = np.repeat(np.arange(start, stop), repeat)
    np.random.default_rng(start).shuffle(values)
    return pa.table({"id": pa.array([f"user-{v}" for v in values])})


@pytest.mark.parametrize("distinct", [5_000, 60_000, 250_000])
def test_saturated_distinct_counts_are_within_three_standard_errors(profile_of: ProfileOf, distinct: int) -> None:
    stats = profile_of(_ids(0, distinct), batch_rows=20_000, max_distinct=2_000).column("id").categorical
    assert stats is not None and not stats.distinct_exact
    assert abs(stats.distinct_count - distinct) <= 3 * STANDARD_ERROR * distinct


def test_distinct_counts_are_exact_below_the_bound(profile_of: ProfileOf) -> None:
    stats = profile_of(_ids(0, 1_999), batch_rows=1_000, max_distinct=2_000).column("id").categorical
    assert stats is not None and stats.distinct_exact and stats.distinct_count == 1_999


def test_merged_distinct_counts_count_shared_values_once(profile_of: ProfileOf) -> None:
    first = profile_of(_ids(0, 60_000), max_distinct=5_000)
    second = profile_of(_ids(40_000, 100_000), max_distinct=5_000)
    stats = merge_profiles(first, second).column("id").categorical
    assert stats is not None and not stats.distinct_exact
    assert abs(stats.distinct_count - 100_000) <= 3 * STANDARD_ERROR * 100_000
    # Unsaturated parts too: their HLLs are built from the exact counts.
    small = merge_profiles(profile_of(_ids(0, 3_000)), profile_of(_ids(2_000, 5_000))).column("id").categorical
    assert small is not None and abs(small.distinct_count - 5_000) <= 3 * STANDARD_ERROR * 5_000
