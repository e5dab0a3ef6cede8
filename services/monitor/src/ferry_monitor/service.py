"""Monitor's use cases: spans in, latency and traces out; inference samples, feedback, performance.

Imports no grpc.

What "acknowledged" means: :meth:`MonitorService.export` returns only after the batch's
latency deltas are committed to monitor's database (SQLite ``synchronous=FULL``, or a
PostgreSQL commit), so an Export answered OK survives a ``kill -9`` of monitor. Batches
that arrive while a commit runs are merged and committed together (group commit): one
transaction per commit, however many exporters send at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from ferry_common.database import DatabaseRunner
from ferry_common.errors import InvalidArgument, NotFound
from ferry_common.logs import get_logger
from ferry_monitor import sketches
from ferry_monitor.domain import (
    BUCKET_SECONDS,
    BucketDelta,
    LatencyBucket,
    LatencyStats,
    SeriesKey,
    SpanFilter,
    StoredSpan,
    TimeRange,
)
from ferry_monitor.inferences import Feedback, InferenceRecord, Performance, measure
from ferry_monitor.metrics import MonitorMetrics
from ferry_monitor.otlp import DecodedBatch
from ferry_monitor.store.base import InferenceStore, LatencyStore
from ferry_monitor.traces import TraceStore

__all__ = ["DEFAULT_WINDOW_SECONDS", "MAX_POINTS", "MonitorService", "Window"]

_log = get_logger("ferry.monitor")
DEFAULT_WINDOW_SECONDS = 300
MAX_POINTS = 1000
_NS = 1_000_000_000

Deltas = dict[tuple[int, SeriesKey], BucketDelta]


@dataclass(frozen=True)
class Window:
    """A requested window in nanoseconds since the epoch; ``None`` = the default."""

    start_ns: int | None = None
    end_ns: int | None = None


def _merge_into(total: Deltas, deltas: Deltas) -> None:
    for slot, delta in deltas.items():
        mine = total.get(slot)
        if mine is None:
            total[slot] = delta
        else:
            mine.absorb(delta)


def _stats(buckets: list[LatencyBucket], cache: sketches.SketchCache) -> LatencyStats:
    if not buckets:
        return LatencyStats()
    total = sketches.merged(*(cache.get((b.bucket_start, b.key), b.count, b.sketch) for b in buckets))
    top = max(b.max_ms for b in buckets)
    # The sketch answers within 0.5 % of the value at each rank; never above the exact max.
    return LatencyStats(
        count=sum(b.count for b in buckets),
        error_count=sum(b.error_count for b in buckets),
        p50_ms=min(sketches.quantile(total, 0.5), top),
        p90_ms=min(sketches.quantile(total, 0.9), top),
        p99_ms=min(sketches.quantile(total, 0.99), top),
        max_ms=top,
    )


class MonitorService:
    """Latency aggregates and inference records in SQL, recent traces in memory."""

    def __init__(
        self,
        store: LatencyStore,
        runner: DatabaseRunner,
        traces: TraceStore,
        *,
        cache: sketches.SketchCache,
        retention_seconds: int,
        inferences: InferenceStore,
        inference_retention_seconds: int = 604_800,
        max_inferences: int = 1_000_000,
        sweep_seconds: float = 60.0,
        clock: Callable[[], int] = time.time_ns,
        metrics: MonitorMetrics | None = None,
    ) -> None:
        self._store = store
        self._inferences = inferences
        self._inference_retention_ns = inference_retention_seconds * _NS
        self._max_inferences = max_inferences
        self._runner = runner
        self._traces = traces
        self._cache = cache
        self.retention_seconds = retention_seconds
        self._sweep_seconds = sweep_seconds
        self.clock = clock
        self._metrics = metrics
        self._pending: list[tuple[Deltas, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the retention sweep (runs once at once, then every ``sweep_seconds``)."""
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="ferry-monitor-sweep")

    async def stop(self) -> None:
        """Stop the sweep and let the last group commit finish."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._committer is not None:
            with contextlib.suppress(Exception):
                await self._committer

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as error:  # a lost database: try again at the next round
                _log.warning("retention sweep failed", error=str(error))
            await asyncio.sleep(self._sweep_seconds)

    async def sweep(self) -> int:
        """Delete expired buckets, and inference records past their retention or their cap; returns rows deleted."""
        horizon = self.clock() // _NS - self.retention_seconds
        deleted = await self._runner.write(self._store.delete_before, horizon // BUCKET_SECONDS * BUCKET_SECONDS)
        if deleted:
            _log.info("expired latency buckets deleted", rows=deleted)
        before = self.clock() - self._inference_retention_ns
        trimmed = await self._runner.write(self._inferences.trim, before, self._max_inferences)
        if trimmed:
            _log.info("old inference records deleted", rows=trimmed)
        return deleted + trimmed

    # ---------------------------------------------------------------- spans in

    async def export(self, batch: DecodedBatch) -> None:
        """Commit the batch's latency deltas (returns once durable), then keep its spans."""
        # Counted before the commit (it merges deltas in place), added once acknowledged.
        counts = self._metrics.count(batch) if self._metrics is not None else None
        if batch.deltas:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._pending.append((batch.deltas, future))
            if self._committer is None or self._committer.done():
                self._committer = asyncio.create_task(self._commit_pending(), name="ferry-monitor-commit")
            await future
        self._traces.add(batch.spans)
        if counts is not None and self._metrics is not None:
            self._metrics.add(counts)

    async def _commit_pending(self) -> None:
        while self._pending:
            taken, self._pending = self._pending, []
            total: Deltas = {}
            for deltas, _ in taken:
                _merge_into(total, deltas)
            try:
                await self._runner.write(self._store.add, total)
            except Exception as error:
                for _, future in taken:
                    if not future.done():
                        future.set_exception(error)
                continue
            for _, future in taken:
                if not future.done():
                    future.set_result(None)

    # ---------------------------------------------------------------- latency out

    def resolve(self, window: Window, field: str = "window") -> tuple[int, int]:
        """The window in nanoseconds: empty end = now, empty start = end minus 5 minutes."""
        end = window.end_ns if window.end_ns is not None else self.clock()
        start = window.start_ns if window.start_ns is not None else end - DEFAULT_WINDOW_SECONDS * _NS
        if start >= end:
            raise InvalidArgument(
                f"{field}.start_time: must be before {field}.end_time ({start} >= {end} ns)",
                field=f"{field}.start_time",
            )
        return start, end

    @staticmethod
    def _aligned(start_ns: int, end_ns: int, step: int) -> TimeRange:
        # Outward to whole steps: the step holding the start, up to the one holding the end.
        step_ns = step * _NS
        return TimeRange(start_ns // step_ns * step, -(-end_ns // step_ns) * step)

    async def latency_summary(self, span_filter: SpanFilter, window: Window) -> LatencyStats:
        """Counts (exact) and percentiles (within 0.5 %) of the matching spans in the window.

        The window is widened to whole buckets: every bucket it overlaps counts.
        """
        time_range = self._aligned(*self.resolve(window), BUCKET_SECONDS)

        def read() -> LatencyStats:
            return _stats(self._store.buckets(span_filter, time_range), self._cache)

        return await self._runner.read(read)

    async def latency_series(
        self, span_filter: SpanFilter, window: Window, step_seconds: int
    ) -> list[tuple[int, LatencyStats]]:
        """One point per step (a multiple of the bucket width) over the window, empty steps included."""
        if step_seconds <= 0 or step_seconds % BUCKET_SECONDS:
            raise InvalidArgument(
                f"step: {step_seconds} s is not a positive multiple of the {BUCKET_SECONDS} s bucket", field="step"
            )
        time_range = self._aligned(*self.resolve(window), step_seconds)
        points = (time_range.end - time_range.first) // step_seconds
        if points > MAX_POINTS:
            raise InvalidArgument(
                f"step: {step_seconds} s over this window gives {points} points, at most {MAX_POINTS}", field="step"
            )

        def read() -> list[tuple[int, LatencyStats]]:
            by_step: dict[int, list[LatencyBucket]] = {}
            for bucket in self._store.buckets(span_filter, time_range):
                start = bucket.bucket_start // step_seconds * step_seconds
                by_step.setdefault(start, []).append(bucket)
            return [
                (start, _stats(by_step.get(start, []), self._cache))
                for start in range(time_range.first, time_range.end, step_seconds)
            ]

        return await self._runner.read(read)

    # ---------------------------------------------------------------- traces out

    def trace(self, trace_id: bytes) -> list[StoredSpan]:
        """Every kept span of a trace, by start time (NotFound naming ``trace_id``)."""
        spans = self._traces.get(trace_id)
        if spans is None:
            raise NotFound(
                f"trace_id: {trace_id.hex()} not found (never received, or evicted from the recent traces kept)",
                field="trace_id",
            )
        return spans

    # ---------------------------------------------------------------- inferences and feedback

    async def record_inferences(self, records: list[InferenceRecord]) -> int:
        """Store sampled inferences, all or none; returns how many."""
        return await self._runner.write(self._inferences.add_records, records)

    async def record_feedback(self, feedback: list[Feedback]) -> tuple[int, list[str]]:
        """Attach ground truth by request id: (feedback items matched, request ids with no record)."""
        unknown = await self._runner.write(self._inferences.add_feedback, feedback)
        missing = set(unknown)
        return sum(1 for item in feedback if item.request_id not in missing), unknown

    async def performance(self, model: str, version: int, route: str, window: Window) -> Performance:
        """Accuracy, MAE and RMSE of a model version's labeled inferences answered in the window."""
        start, end = self.resolve(window)

        def read() -> Performance:
            rows = self._inferences.labeled(model, version, route, start, end)
            return measure([(json.loads(outputs), json.loads(truth)) for outputs, truth in rows])

        return await self._runner.read(read)
