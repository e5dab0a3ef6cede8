"""The monitor store on SQLAlchemy 2.x (SQLite or PostgreSQL).

:meth:`SqlLatencyStore.add` reads the rows of the buckets it touches with ``SELECT ...
FOR UPDATE`` (SQLite: the write lock from ``BEGIN IMMEDIATE``), merges each delta into its
row's sketch and writes all rows back in the same transaction, so a batch is counted
whole or not at all. Two replicas on one PostgreSQL may both insert a new row: the loser's
transaction fails on the unique key and is retried, merging into the winner's row. When
``add`` returns, the batch is committed (SQLite ``synchronous=FULL``: on disk).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from ferry_common.database import Database
from ferry_common.errors import Unavailable
from ferry_monitor import sketches
from ferry_monitor.domain import BucketDelta, LatencyBucket, SeriesKey, SpanFilter, TimeRange
from ferry_monitor.store.rows import latency_buckets as t

__all__ = ["SqlLatencyStore"]

_ATTEMPTS = 3
_KEY_COLUMNS = ("service", "method", "deployment", "model", "version", "route")


def _key(row: RowMapping) -> SeriesKey:
    return SeriesKey(row["service"], row["method"], row["deployment"], row["model"], int(row["version"]), row["route"])


class SqlLatencyStore:
    """:class:`~ferry_monitor.store.base.LatencyStore` on a :class:`~ferry_common.database.Database`."""

    def __init__(self, database: Database, cache: sketches.SketchCache | None = None) -> None:
        self._database = database
        self.cache = cache or sketches.SketchCache()

    def add(self, deltas: Mapping[tuple[int, SeriesKey], BucketDelta]) -> None:
        if not deltas:
            return
        for attempt in range(_ATTEMPTS):
            try:
                self._add_once(deltas)
                return
            except IntegrityError:
                # Another replica on the same PostgreSQL created one of these rows after our
                # SELECT ... FOR UPDATE: the retry finds it and merges into it.
                if attempt == _ATTEMPTS - 1:
                    raise Unavailable("monitor database: concurrent writers kept colliding; retry") from None

    def _add_once(self, deltas: Mapping[tuple[int, SeriesKey], BucketDelta]) -> None:
        starts = sorted({start for start, _ in deltas})
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        cached: list[tuple[tuple[int, SeriesKey], int, sketches.Sketch]] = []
        with self._database.writes.begin() as session:
            query = (
                sa.select(t.c.id, t.c.bucket_start, *[t.c[c] for c in _KEY_COLUMNS], t.c.count, t.c.error_count)
                .add_columns(t.c.max_ms, t.c.sketch)
                .where(t.c.bucket_start.in_(starts))
                .with_for_update()
            )
            existing = {(int(row["bucket_start"]), _key(row)): row for row in session.execute(query).mappings()}
            for slot, delta in deltas.items():
                row = existing.get(slot)
                fresh = delta.sketch()
                if row is None:
                    start, key = slot
                    inserts.append(
                        {
                            "bucket_start": start,
                            **key._asdict(),
                            "count": delta.count,
                            "error_count": delta.error_count,
                            "max_ms": delta.max_ms,
                            "sketch": sketches.encode(fresh),
                        }
                    )
                    cached.append((slot, delta.count, fresh))
                    continue
                count = int(row["count"]) + delta.count
                sketch = sketches.merged(self.cache.get(slot, int(row["count"]), row["sketch"]), fresh)
                updates.append(
                    {
                        "row_id": row["id"],
                        "new_count": count,
                        "new_error_count": int(row["error_count"]) + delta.error_count,
                        "new_max_ms": max(float(row["max_ms"]), delta.max_ms),
                        "new_sketch": sketches.encode(sketch),
                    }
                )
                cached.append((slot, count, sketch))
            if inserts:
                session.execute(sa.insert(t), inserts)
            if updates:
                session.execute(
                    sa.update(t)
                    .where(t.c.id == sa.bindparam("row_id"))
                    .values(
                        count=sa.bindparam("new_count"),
                        error_count=sa.bindparam("new_error_count"),
                        max_ms=sa.bindparam("new_max_ms"),
                        sketch=sa.bindparam("new_sketch"),
                    )
                    .execution_options(synchronize_session=False),
                    updates,
                )
        # Only after the commit: a rolled-back batch must leave no trace in the cache.
        for slot, count, sketch in cached:
            self.cache.put(slot, count, sketch)

    def buckets(self, span_filter: SpanFilter, time_range: TimeRange) -> list[LatencyBucket]:
        query = sa.select(t).where(t.c.bucket_start >= time_range.first, t.c.bucket_start < time_range.end)
        for column in _KEY_COLUMNS:
            value = getattr(span_filter, column)
            if value:
                query = query.where(t.c[column] == value)
        with self._database.reads.begin() as session:
            rows = session.execute(query.order_by(t.c.bucket_start)).mappings().all()
        return [
            LatencyBucket(
                bucket_start=int(row["bucket_start"]),
                key=_key(row),
                count=int(row["count"]),
                error_count=int(row["error_count"]),
                max_ms=float(row["max_ms"]),
                sketch=row["sketch"],
            )
            for row in rows
        ]

    def delete_before(self, bucket_start: int) -> int:
        with self._database.writes.begin() as session:
            result = session.execute(sa.delete(t).where(t.c.bucket_start < bucket_start))
            return int(getattr(result, "rowcount", 0) or 0)
