"""Profile sketches: Apache DataSketches against the hand-written HyperLogLog they replaced.

Three tables, each with ratios to a baseline measured in the same run:

1. distinct-count sketches alone, fed 1M values the way a profile feeds them (Python
   values after Arrow's value_counts): the old blake2b HyperLogLog (baseline, kept
   below verbatim) against datasketches' HLL (4- and 8-bit registers) and CPC;
2. the whole ProfileBuilder on a 1M-row numeric column and a 1M-row high-cardinality
   string column, with datasketches' HLL and with the old HyperLogLog swapped in;
3. quantile sketches on 1M numeric values: the profile's vectorised DDSketch
   (baseline) against datasketches' KLL.

    .venv/bin/python bench/profile/bench_profile.py            # 3 runs per row (~1 min)
    .venv/bin/python bench/profile/bench_profile.py --quick    # 1 run of 200k values per row
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import datasketches as ds
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferry_profile import QUANTILES, ProfileBuilder
from ferry_profile import _categorical as categorical
from ferry_profile._numeric import NumericAccumulator


class OldHyperLogLog:
    """The profile's HyperLogLog before datasketches (precision 14, blake2b), verbatim."""

    P = 14
    M = 1 << P

    def __init__(self) -> None:
        self.registers = np.zeros(self.M, dtype=np.uint8)

    def add(self, values: Iterable[object]) -> None:
        hashes = np.fromiter(
            (int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8).digest(), "big") for v in values),
            dtype=np.uint64,
        )
        if hashes.size == 0:
            return
        index = (hashes >> np.uint64(64 - self.P)).astype(np.int64)
        rest = (hashes << np.uint64(self.P)) | np.uint64(1 << (self.P - 1))
        # Position of the first 1 bit of the remaining 50 bits (1-based).
        rank = 64 - np.floor(np.log2(rest.astype(np.float64))).astype(np.int64)
        np.maximum.at(self.registers, index, np.clip(rank, 1, 64 - self.P + 1).astype(np.uint8))

    def estimate(self) -> int:
        m = float(self.M)
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / float(np.sum(np.ldexp(1.0, -self.registers.astype(np.int64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))
        return round(raw)

    # What the profile's accumulator calls on its distinct sketch.
    def get_estimate(self) -> float:
        return float(self.estimate())

    def serialize_compact(self) -> bytes:
        return self.registers.tobytes()


# ----------------------------------------------------------------------------- data


def _numbers(n: int) -> list[pa.Array]:
    values = np.random.default_rng(1).normal(100, 15, n)  # every value distinct
    return [pa.array(chunk) for chunk in np.array_split(values, max(1, n // 65_536))]


def _strings(n: int) -> list[pa.Array]:
    ids = np.random.default_rng(2).integers(0, n, n)  # about 63 % distinct
    text = pa.array(np.char.add("user-", ids.astype(str)))
    return [text.slice(i, 65_536) for i in range(0, n, 65_536)]


def _distinct(chunks: list[pa.Array]) -> int:
    return len(pc.unique(pa.chunked_array(chunks)))


def _python_batches(chunks: list[pa.Array]) -> list[list[Any]]:
    """Each batch's distinct values as Python objects: what the accumulator hands its sketch."""
    return [pc.unique(chunk).to_pylist() for chunk in chunks]


# ----------------------------------------------------------------------------- timing


def _interleaved(runs: dict[str, Callable[[], Any]], repeat: int) -> dict[str, tuple[float, Any]]:
    """Median seconds and last result of each run; rounds alternate so load swings hit all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, Any] = {}
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), results[name]) for name in runs}


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("| " + " | ".join(cells) + " |")


# ----------------------------------------------------------------------------- 1. distinct sketches


def _old_hll(batches: list[list[Any]]) -> tuple[float, int]:
    hll = OldHyperLogLog()
    for batch in batches:
        hll.add(batch)
    return hll.estimate(), hll.M


def _datasketch(make: Callable[[], Any]) -> Callable[[list[list[Any]]], tuple[float, int]]:
    def run(batches: list[list[Any]]) -> tuple[float, int]:
        sketch = make()
        update = sketch.update
        for batch in batches:
            for value in batch:
                update(value)
        serialize = getattr(sketch, "serialize_compact", None) or sketch.serialize  # cpc: serialize()
        return sketch.get_estimate(), len(serialize())

    return run


DISTINCT_SKETCHES: dict[str, Callable[[list[list[Any]]], tuple[float, int]]] = {
    "old HyperLogLog (p=14, blake2b)": _old_hll,
    "datasketches hll lg_k=14 HLL_4": _datasketch(lambda: ds.hll_sketch(14, ds.tgt_hll_type.HLL_4)),
    "datasketches hll lg_k=14 HLL_8": _datasketch(lambda: ds.hll_sketch(14, ds.tgt_hll_type.HLL_8)),
    "datasketches cpc lg_k=12": _datasketch(lambda: ds.cpc_sketch(12)),
}


def bench_distinct(n: int, repeat: int) -> None:
    rows = []
    for kind, chunks in (("numeric (float64)", _numbers(n)), ("string (high cardinality)", _strings(n))):
        truth = _distinct(chunks)
        batches = _python_batches(chunks)
        values = sum(len(b) for b in batches)
        runs = {name: (lambda run=run, batches=batches: run(batches)) for name, run in DISTINCT_SKETCHES.items()}
        measured = _interleaved(runs, repeat)  # type: ignore[arg-type]
        base = measured[next(iter(runs))][0]
        for name, (seconds, (estimate, size)) in measured.items():
            error = (estimate - truth) / truth
            per_million = seconds * 1e6 / values
            rows.append([kind, name, f"{per_million:.3f}", f"{base / seconds:.2f}x", f"{error:+.3%}", f"{size:,}"])
    _table(
        f"1. distinct-count sketches: {n:,} values per column, each batch's distinct values fed as Python objects",
        ["column", "sketch", "s per 1M values", "speed vs old", "error", "bytes"],
        rows,
    )


# ----------------------------------------------------------------------------- 2. whole profile


@contextlib.contextmanager
def _old_hll_in_profile() -> Iterator[None]:
    """The accumulator with the old HyperLogLog as its distinct sketch (bulk add, as it had)."""
    hll_of, update = categorical._hll_of, categorical._update

    def old_hll_of(values: Iterable[Any]) -> Any:
        hll = OldHyperLogLog()
        hll.add(values)
        return hll

    def old_update(hll: Any, values: Iterable[Any]) -> None:
        hll.add(values)

    categorical._hll_of, categorical._update = old_hll_of, old_update  # type: ignore[assignment]
    try:
        yield
    finally:
        categorical._hll_of, categorical._update = hll_of, update  # type: ignore[assignment]


def _profile(chunks: list[pa.Array], max_distinct: int) -> Any:
    builder = ProfileBuilder(pa.schema([("c", chunks[0].type)]), max_distinct, parallel=False)
    for chunk in chunks:
        builder.add(pa.record_batch([chunk], names=["c"]))
    return builder.result().columns[0]


def _with_old_hll(chunks: list[pa.Array], max_distinct: int) -> Any:
    with _old_hll_in_profile():
        return _profile(chunks, max_distinct)


def bench_profile(n: int, repeat: int) -> None:
    rows = []
    cases = (
        ("numeric (float64)", _numbers(n), 65_536),
        ("string, saturates at 65,536", _strings(n), 65_536),
        ("string, saturates at 4,096", _strings(n), 4_096),
    )
    for kind, chunks, max_distinct in cases:
        truth = _distinct(chunks)
        runs = {
            "old HyperLogLog": lambda chunks=chunks, m=max_distinct: _with_old_hll(chunks, m),
            "datasketches HLL_4": lambda chunks=chunks, m=max_distinct: _profile(chunks, m),
        }
        measured = _interleaved(runs, repeat)  # type: ignore[arg-type]
        base = measured["old HyperLogLog"][0]
        for name, (seconds, column) in measured.items():
            error = ""
            if column.categorical is not None:
                error = f"{(column.categorical.distinct_count - truth) / truth:+.3%}"
            rows.append([kind, name, f"{seconds * 1e6 / n:.3f}", f"{base / seconds:.2f}x", error])
    _table(
        f"2. ProfileBuilder.add + result, one column of {n:,} rows (distinct-count error)",
        ["column", "distinct sketch", "s per 1M values", "speed vs old", "error"],
        rows,
    )


# ----------------------------------------------------------------------------- 3. quantile sketches


def _ddsketch(values: np.ndarray[Any, Any]) -> list[float]:
    # Only the sketch part of the numeric accumulator (moments and fine histogram apart).
    accumulator = NumericAccumulator()
    for chunk in np.array_split(values, max(1, values.size // 65_536)):
        accumulator._add_sketch(chunk, float(chunk.min()), float(chunk.max()))
    sketch = accumulator.sketch()
    return [float(sketch.get_quantile_value(q)) for q in QUANTILES]


def _kll(values: np.ndarray[Any, Any]) -> list[float]:
    sketch = ds.kll_doubles_sketch(200)
    for chunk in np.array_split(values, max(1, values.size // 65_536)):
        sketch.update(chunk)
    return [float(sketch.get_quantile(q)) for q in QUANTILES]


def bench_quantiles(n: int, repeat: int) -> None:
    rows = []
    values = np.random.default_rng(3).lognormal(3, 1, n)
    ordered = np.sort(values)
    runs = {
        "DDSketch, vectorised (1 % rel.)": lambda: _ddsketch(values),
        "datasketches KLL k=200": lambda: _kll(values),
    }
    measured = _interleaved(runs, repeat)  # type: ignore[arg-type]
    base = measured[next(iter(runs))][0]
    for name, (seconds, quantiles) in measured.items():
        truths = [ordered[round(q * (n - 1))] for q in QUANTILES]
        value_error = max(abs(v - t) / t for v, t in zip(quantiles, truths, strict=True))
        rank_error = max(abs(np.searchsorted(ordered, v) / n - q) for q, v in zip(QUANTILES, quantiles, strict=True))
        rows.append(
            [
                "numeric (lognormal)",
                name,
                f"{seconds * 1e6 / n:.3f}",
                f"{base / seconds:.2f}x",
                f"{value_error:.3%}",
                f"{rank_error:.3%}",
            ]
        )
    _table(
        f"3. quantile sketches, {n:,} values (max error over the profile's 7 quantiles)",
        ["column", "sketch", "s per 1M values", "speed vs DDSketch", "value error", "rank error"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of 200,000 values per row")
    parser.add_argument("--values", type=int, default=1_000_000, help="values per column (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the median is shown")
    args = parser.parse_args()
    n, repeat = (200_000, 1) if args.quick else (args.values, args.repeat)
    bench_distinct(n, repeat)
    bench_profile(n, repeat)
    bench_quantiles(n, repeat)


if __name__ == "__main__":
    main()
