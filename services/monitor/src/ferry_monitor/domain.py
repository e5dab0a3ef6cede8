"""Monitor's domain objects: spans as monitor aggregates them, series keys, filters, windows.

Latency is aggregated per *series*: one :class:`SeriesKey` (service, method, deployment,
model, version, route) per distinct combination seen, in fixed :data:`BUCKET_SECONDS`
buckets aligned on the Unix epoch. A query merges every series its filter matches, so the
(service, method) view and the (deployment, model, version, route) view are both answered
from the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from ferry_monitor.sketches import Sketch, add_all, new_sketch

__all__ = [
    "BUCKET_SECONDS",
    "BucketDelta",
    "LatencyBucket",
    "LatencyStats",
    "SeriesKey",
    "SpanFilter",
    "StoredSpan",
    "TimeRange",
]

# Width of a latency bucket (seconds). Fixed: rows written with another width would not line up.
BUCKET_SECONDS = 10


class SeriesKey(NamedTuple):
    """What a latency series is about; empty strings and version 0 when a span lacks the attribute."""

    service: str
    method: str
    deployment: str = ""
    model: str = ""
    version: int = 0
    route: str = ""


@dataclass
class BucketDelta:
    """What batches of spans add to one (bucket, series): exact counts and max, and the durations.

    Durations are kept as a list until the sketch is asked for (once, at commit): appending
    is the only per-span work on the receiving path.
    """

    count: int = 0
    error_count: int = 0
    max_ms: float = 0.0
    durations_ms: list[float] = field(default_factory=list)

    def add(self, duration_ms: float, error: bool) -> None:
        self.count += 1
        if error:
            self.error_count += 1
        if duration_ms > self.max_ms:
            self.max_ms = duration_ms
        self.durations_ms.append(duration_ms)

    def absorb(self, other: BucketDelta) -> None:
        """Add ``other``'s spans to this delta."""
        self.count += other.count
        self.error_count += other.error_count
        self.max_ms = max(self.max_ms, other.max_ms)
        self.durations_ms.extend(other.durations_ms)

    def sketch(self) -> Sketch:
        """A new sketch of the durations."""
        sketch = new_sketch()
        add_all(sketch, self.durations_ms)
        return sketch


@dataclass(frozen=True)
class LatencyBucket:
    """One stored (bucket, series) row: counts, max and the sketch's bytes."""

    bucket_start: int
    key: SeriesKey
    count: int
    error_count: int
    max_ms: float
    sketch: bytes


@dataclass(frozen=True)
class LatencyStats:
    """Count, errors and percentiles of a set of spans (milliseconds)."""

    count: int = 0
    error_count: int = 0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0


@dataclass(frozen=True)
class SpanFilter:
    """Which series to merge: empty fields (version 0) match everything."""

    service: str = ""
    method: str = ""
    deployment: str = ""
    model: str = ""
    version: int = 0
    route: str = ""

    def matches(self, key: SeriesKey) -> bool:
        return (
            (not self.service or key.service == self.service)
            and (not self.method or key.method == self.method)
            and (not self.deployment or key.deployment == self.deployment)
            and (not self.model or key.model == self.model)
            and (not self.version or key.version == self.version)
            and (not self.route or key.route == self.route)
        )


@dataclass(frozen=True)
class TimeRange:
    """Bucket starts ``[first, end)`` in seconds since the epoch (multiples of the bucket width)."""

    first: int
    end: int


class StoredSpan(NamedTuple):
    """A span kept for GetTrace: its OTLP bytes and the resource's ``service.name``."""

    span_id: bytes
    service: str
    start_ns: int
    data: bytes
