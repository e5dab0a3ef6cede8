"""The latency store on SQLite and PostgreSQL alike: merges, filters, retention, and the group commit."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from ferry_monitor import sketches
from ferry_monitor.domain import BucketDelta, SeriesKey, SpanFilter, TimeRange
from ferry_monitor.inferences import Feedback, InferenceRecord
from ferry_monitor.otlp import DecodedBatch
from ferry_monitor.service import MonitorService, Window
from ferry_monitor.store import Database, SqlInferenceStore, SqlLatencyStore, open_database
from ferry_monitor.traces import TraceStore

NS = 1_000_000_000


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Database]:
    url = (
        f"sqlite:///{tmp_path / 'monitor.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    )
    db = open_database(url, threads=2)
    yield db
    db.close()


def delta(*durations: float, errors: int = 0) -> BucketDelta:
    found = BucketDelta()
    for index, duration in enumerate(durations):
        found.add(duration, index < errors)
    return found


def test_add_merges_into_existing_rows_in_one_transaction(database: Database) -> None:
    store = SqlLatencyStore(database)
    a = SeriesKey("svc", "/a")
    b = SeriesKey("ferry-serve", "/infer", "churn", "churn", 3, "canary")
    store.add({(100, a): delta(1.0, 2.0, errors=1), (100, b): delta(5.0)})
    store.add({(100, a): delta(3.0, 4.0), (110, a): delta(10.0)})

    rows = {(row.bucket_start, row.key): row for row in store.buckets(SpanFilter(), TimeRange(100, 120))}
    assert set(rows) == {(100, a), (100, b), (110, a)}
    merged = rows[(100, a)]
    assert (merged.count, merged.error_count, merged.max_ms) == (4, 1, 4.0)
    assert sketches.decode(merged.sketch).count == 4
    assert sketches.quantile(sketches.decode(merged.sketch), 1.0) == pytest.approx(4.0, rel=0.005)
    # A fresh store (no cache) reads the same bytes back.
    assert [r.count for r in SqlLatencyStore(database).buckets(SpanFilter(service="svc"), TimeRange(100, 110))] == [4]

    assert [r.key for r in store.buckets(SpanFilter(model="churn", version=3, route="canary"), TimeRange(0, 200))] == [
        b
    ]
    assert store.buckets(SpanFilter(model="churn", version=4), TimeRange(0, 200)) == []
    assert store.buckets(SpanFilter(), TimeRange(110, 110)) == []
    assert store.delete_before(110) == 2
    assert [(r.bucket_start, r.key) for r in store.buckets(SpanFilter(), TimeRange(0, 200))] == [(110, a)]


def test_group_commit_merges_concurrent_batches_exactly(database: Database) -> None:
    now = 1_000 * NS
    service = MonitorService(
        SqlLatencyStore(database),
        database.runner,
        TraceStore(1 << 20, 100),
        cache=sketches.SketchCache(),
        retention_seconds=3600,
        inferences=SqlInferenceStore(database),
        clock=lambda: now,
    )
    key = SeriesKey("svc", "/a")

    async def run() -> None:
        batches = []
        for i in range(50):
            batch = DecodedBatch()
            batch.deltas[(990, key)] = delta(float(i + 1), errors=i % 2)
            batches.append(service.export(batch))
        await asyncio.gather(*batches)

    asyncio.run(run())
    stats = asyncio.run(service.latency_summary(SpanFilter(service="svc"), Window(980 * NS, 1_000 * NS)))
    assert (stats.count, stats.error_count, stats.max_ms) == (50, 25, 50.0)
    assert stats.p50_ms == pytest.approx(25.0, rel=0.005)
    assert asyncio.run(service.latency_summary(SpanFilter(service="svc"), Window(None, 900 * NS))).count == 0


def test_inference_records_feedback_and_trim(database: Database) -> None:
    store = SqlInferenceStore(database)

    def rec(request_id: str, time_ns: int, route: str = "primary") -> InferenceRecord:
        return InferenceRecord(request_id, "iris", "iris", 1, route, time_ns, 1.0, "{}", '{"label":["a"]}')

    assert store.add_records([rec(f"r{i}", i * NS) for i in range(10)] + [rec("r0", 0, "shadow")]) == 11
    assert store.add_feedback([Feedback("r0", '"a"'), Feedback("zz", '"b"'), Feedback("r1", '"b"')]) == ["zz"]
    assert sorted(store.labeled("iris", 1, "", 0, 100 * NS)) == [('{"label":["a"]}', '"a"')] * 2 + [
        ('{"label":["a"]}', '"b"')
    ]
    assert len(store.labeled("iris", 1, "shadow", 0, 100 * NS)) == 1
    assert store.labeled("iris", 1, "", 1 * NS, 2 * NS) == [('{"label":["a"]}', '"b"')]
    # Older than 2 s: r0, its shadow and r1 go; then only the newest 5 stay.
    assert store.trim(2 * NS, keep=5) == 3 + 3
    assert store.add_feedback([Feedback(f"r{i}", "1") for i in range(10)]) == [f"r{i}" for i in range(5)]


@pytest.mark.postgres
def test_two_replicas_creating_one_row_both_count(postgres_url: str) -> None:
    first, second = open_database(postgres_url, threads=2), open_database(postgres_url, threads=2)
    try:
        mine, theirs = SqlLatencyStore(first), SqlLatencyStore(second)
        key = SeriesKey("svc", "/race")

        class Racing(BucketDelta):
            raced = False

            def sketch(self) -> sketches.Sketch:
                # Between this replica's SELECT ... FOR UPDATE and its INSERT, the other
                # replica creates the same row and commits.
                if not Racing.raced:
                    Racing.raced = True
                    with ThreadPoolExecutor(1) as pool:
                        pool.submit(theirs.add, {(100, key): delta(1.0)}).result(timeout=30)
                return super().sketch()

        racing = Racing()
        racing.add(2.0, True)
        mine.add({(100, key): racing})
        rows = SqlLatencyStore(first).buckets(SpanFilter(service="svc"), TimeRange(100, 110))
        assert [(r.count, r.error_count, r.max_ms) for r in rows] == [(2, 1, 2.0)]
    finally:
        first.close()
        second.close()
