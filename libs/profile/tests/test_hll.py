"""The numpy HLL registers are DataSketches' own: same hash, same coupons, same estimates."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from datasketches import hll_sketch, hll_union, tgt_hll_type

from ferry_profile._hll import registers_of, sketch_of

LG_K = 14


def library_registers(values: list[str]) -> np.ndarray:
    """The registers datasketches itself makes, one ``update`` per value (HLL_8 updatable image)."""
    sketch = hll_sketch(LG_K, tgt_hll_type.HLL_8)
    for value in values:
        sketch.update(value)
    image = sketch.serialize_updatable()
    assert image[7] & 3 == 2, "the sketch must be in HLL mode for its registers to be compared"
    return np.frombuffer(image[40:], dtype=np.uint8)


def strings(count: int, seed: int) -> list[str]:
    """Strings of every length from 0 to 70 bytes and beyond, ASCII and multi-byte UTF-8."""
    rng = np.random.default_rng(seed)
    alphabet = [chr(c) for c in range(32, 127)] + list("éüßø中文日本語😀")
    lengths = rng.integers(0, 72, size=count)
    return ["".join(rng.choice(alphabet, size=n)) for n in lengths]


def test_registers_match_datasketches_for_every_length_and_encoding() -> None:
    values = strings(40_000, seed=1) + [f"note {i} word {i * 7}" for i in range(30_000)] + ["x" * 5000]
    assert np.array_equal(registers_of(pa.array(values), LG_K), library_registers(values))
    assert np.array_equal(registers_of(pa.array(values, pa.large_string()), LG_K), library_registers(values))


def test_nulls_slices_chunks_and_empty_strings_are_handled_like_datasketches() -> None:
    values = strings(30_000, seed=2)
    with_nulls = [None if i % 11 == 0 else v for i, v in enumerate(values)]
    chunked = pa.chunked_array([pa.array(with_nulls[:7_000]), pa.array(with_nulls[7_000:]).slice(5)])
    kept = [v for v in with_nulls[:7_000] + with_nulls[7_005:] if v is not None]
    assert "" in kept  # DataSketches ignores empty strings; so must the registers
    assert np.array_equal(registers_of(chunked, LG_K), library_registers(kept))


@pytest.mark.parametrize("count", [100_000, 1_000_000])
def test_estimate_is_within_the_stated_error_and_unions_with_library_sketches(count: int) -> None:
    values = pa.array([f"id-{i}" for i in range(count)])
    sketch = sketch_of(registers_of(values, LG_K), LG_K)
    # 1.04 / sqrt(2**14) = 0.81 % relative standard error; 4 sigma here.
    assert abs(sketch.get_estimate() - count) <= 4 * 0.0081 * count
    # Half the values again, hashed by the library: the union counts each value once.
    library = hll_sketch(LG_K, tgt_hll_type.HLL_4)
    for i in range(0, count, 2):
        library.update(f"id-{i}")
    union = hll_union(LG_K)
    union.update(sketch)
    union.update(library)
    assert abs(union.get_estimate() - count) <= 4 * 0.0081 * count


def test_booleans_hash_as_their_text() -> None:
    values = pa.array([True, False, None] * 10)
    expected = hll_sketch(LG_K, tgt_hll_type.HLL_8)
    expected.update("true")
    expected.update("false")
    ours = sketch_of(registers_of(values, LG_K), LG_K)
    union = hll_union(LG_K)
    union.update(ours)
    union.update(expected)
    assert round(ours.get_estimate()) == 2
    assert round(union.get_estimate()) == 2
