"""Monitor's sketch helpers against ddsketch itself."""

from __future__ import annotations

import numpy as np
import pytest

from ferry_monitor import sketches


def test_add_all_equals_one_add_per_value() -> None:
    rng = np.random.default_rng(3)
    values = [0.0, 0.0, 1e-9, *rng.lognormal(2.0, 2.0, 5000).tolist(), 123456.789]
    one_by_one = sketches.new_sketch()
    for value in values:
        one_by_one.add(value)
    at_once = sketches.new_sketch()
    sketches.add_all(at_once, values[:100])
    sketches.add_all(at_once, values[100:])
    sketches.add_all(at_once, [])
    assert sketches.encode(at_once) == sketches.encode(one_by_one)
    assert (at_once.count, at_once._zero_count, at_once._max, at_once._min) == (
        one_by_one.count,
        one_by_one._zero_count,
        one_by_one._max,
        one_by_one._min,
    )
    assert at_once.sum == pytest.approx(one_by_one.sum)
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        assert sketches.quantile(at_once, q) == sketches.quantile(one_by_one, q)


def test_bytes_round_trip_and_cache_follows_the_count() -> None:
    sketch = sketches.new_sketch()
    sketches.add_all(sketch, [1.0, 2.0, 3.0, 4.0])
    data = sketches.encode(sketch)
    decoded = sketches.decode(data)
    assert sketches.quantile(decoded, 0.5) == pytest.approx(sketches.quantile(sketch, 0.5), rel=1e-12)
    # A decoded sketch merges with fresh ones (ddsketch refuses sketches of another gamma).
    assert sketches.merged(decoded, sketch, sketches.decode(data)).count == 12
    cache = sketches.SketchCache(capacity=1)
    first = cache.get("row", 4, data)
    assert cache.get("row", 4, b"never decoded") is first
    bigger = sketches.merged(first, first)
    cache.put("row", 8, bigger)
    assert cache.get("row", 8, b"") is bigger
    assert cache.get("other", 4, data) is not bigger  # a second entry evicts the first
    assert cache.get("row", 4, data).count == 4
