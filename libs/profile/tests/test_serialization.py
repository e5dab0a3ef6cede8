"""The profile.json form: round trips, strict JSON, and files written before sketches were kept."""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

from ferry_profile import Profile, ProfileMergeError, compare, merge_profiles

ProfileOf = Callable[..., Profile]  # the conftest fixture
OLD_FILE = pathlib.Path(__file__).parent / "data" / "profile_before_sketches.json"


def _round_trip(profile: Profile) -> Profile:
    text = json.dumps(profile.to_json_dict(), allow_nan=False)  # strict JSON: no NaN or Infinity literals
    return Profile.from_json_dict(json.loads(text))


def test_every_kind_of_column_round_trips(profile_of: ProfileOf) -> None:
    rng = np.random.default_rng(21)
    n = 30_000
    table = pa.table(
        {
            "continuous": rng.lognormal(0, 2, n),
            "few": rng.integers(0, 10, n),
            "infinite": pa.array([math.inf, -math.inf, None] * (n // 3)),
            "nan": pa.array([math.nan] * n),
            "huge": rng.normal(0, 1e300, n),
            "text": pa.array([f"v{i}" for i in rng.integers(0, 5_000, n)]),
            "flag": pa.array(rng.integers(0, 2, n) == 0),
            "when": pa.array(np.arange(n), pa.timestamp("s")),
        }
    )
    profile = profile_of(table, batch_rows=7_000, max_distinct=1_000)
    assert profile.column("text").categorical is not None and not profile.column("text").categorical.distinct_exact
    back = _round_trip(profile)
    assert back.to_json_dict() == profile.to_json_dict()
    # NaN statistics (no finite value; an overflowing std) make == false: compare the rest.
    for name in ("continuous", "few", "text", "flag", "when", "nan"):
        assert back.column(name) == profile.column(name)
    merged = merge_profiles(profile, profile)
    assert _round_trip(merged).to_json_dict() == merged.to_json_dict()
    assert _round_trip(merged).column("text") == merged.column("text")


def test_the_sketches_stay_small(profile_of: ProfileOf) -> None:
    rng = np.random.default_rng(22)
    n = 300_000
    table = pa.table({"x": rng.uniform(0, 1, n), "s": pa.array([f"user-{i}" for i in rng.integers(0, 10**6, n)])})
    entries = {c["name"]: c for c in profile_of(table).to_json_dict()["columns"]}
    # A full fine histogram (16,384 bins) plus the DDSketch; the HLL plus 768 frequent values.
    assert len(json.dumps(entries["x"])) < 64_000
    assert len(json.dumps(entries["s"])) < 64_000


def _old_table() -> pa.Table:
    """The table the stored file was computed from (by the profile code of ingest before this library)."""
    rng = np.random.default_rng(7)
    n = 400
    return pa.table(
        {
            "age": pa.array([int(v) if i % 17 else None for i, v in enumerate(rng.integers(18, 80, n))]),
            "income": pa.array([float(v) for v in rng.lognormal(10, 0.5, n)]),
            "city": pa.array(
                [str(v) for v in rng.choice(["paris", "lyon", "nantes", "lille"], n, p=[0.4, 0.3, 0.2, 0.1])]
            ),
            "churned": pa.array([bool(v) for v in rng.integers(0, 2, n)]),
            "seen": pa.array(list(range(n)), pa.timestamp("s")),
        }
    )


def test_files_written_before_sketches_load_with_the_same_statistics(profile_of: ProfileOf) -> None:
    old = Profile.from_json_dict(json.loads(OLD_FILE.read_text()))
    new = profile_of(_old_table())
    assert old.row_count == new.row_count
    for before, now in zip(old.columns, new.columns, strict=True):
        assert (before.name, before.type, before.null_count) == (now.name, now.type, now.null_count)
        if before.numeric is not None and now.numeric is not None:
            a, b = before.numeric, now.numeric
            assert (a.min, a.max, a.mean, a.std, a.quantiles) == (b.min, b.max, b.mean, b.std, b.quantiles)
            assert (a.histogram_edges, a.histogram_counts) == (b.histogram_edges, b.histogram_counts)
            assert a.count == b.count  # derived from the stored DDSketch
        elif before.categorical is not None and now.categorical is not None:
            assert before.categorical.top_values == now.categorical.top_values
            assert before.categorical.distinct_count == now.categorical.distinct_count
        else:
            assert before == now  # only nulls counted
    assert _round_trip(old) == old


def test_files_written_before_sketches_compare_but_do_not_merge(profile_of: ProfileOf) -> None:
    old = Profile.from_json_dict(json.loads(OLD_FILE.read_text()))
    report = compare(profile_of(_old_table()), old, numeric="ks")
    assert not report.drifted and {f.name for f in report.features} == {"age", "income", "city", "churned"}
    # Old profiles keep only the 20 histogram bins: KS is off by at most a bin's share.
    assert report.feature("income").value <= max(old.column("income").numeric.histogram_counts) / 400  # type: ignore[union-attr]
    with pytest.raises(ProfileMergeError, match=r"column 'age': .*written before profiles were mergeable"):
        merge_profiles(old, old)
