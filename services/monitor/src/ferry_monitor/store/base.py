"""The monitor store interface.

Methods are synchronous and each runs in one transaction; the service calls them through
:class:`~ferry_common.database.DatabaseRunner` (a lost database becomes UNAVAILABLE).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from ferry_monitor.domain import BucketDelta, LatencyBucket, SeriesKey, SpanFilter, TimeRange
from ferry_monitor.inferences import Feedback, InferenceRecord

if TYPE_CHECKING:
    from ferry_monitor.slos import Alert, Slo

__all__ = ["AlertStore", "InferenceStore", "LatencyStore"]


class LatencyStore(Protocol):
    """Latency buckets: exact counts and max, and a mergeable sketch per (bucket, series)."""

    def add(self, deltas: Mapping[tuple[int, SeriesKey], BucketDelta]) -> None:
        """Add every delta to its row (created when new), all in one transaction."""

    def buckets(self, span_filter: SpanFilter, time_range: TimeRange) -> list[LatencyBucket]:
        """The rows of the buckets in ``time_range`` whose series match ``span_filter``."""

    def delete_before(self, bucket_start: int) -> int:
        """Delete the buckets that start before ``bucket_start``; returns how many rows went."""


class InferenceStore(Protocol):
    """Sampled inferences and their ground truth."""

    def add_records(self, records: Sequence[InferenceRecord]) -> int:
        """Store every record in one transaction; returns how many."""

    def add_feedback(self, feedback: Sequence[Feedback]) -> list[str]:
        """Attach ground truth to every record of each request id; returns the ids with no record."""

    def labeled(self, model: str, version: int, route: str, start_ns: int, end_ns: int) -> list[tuple[str, str]]:
        """(outputs JSON, ground truth JSON) of the labeled records of a version in ``[start_ns, end_ns)``."""

    def inputs(self, model: str, version: int, start_ns: int, end_ns: int, limit: int) -> list[str]:
        """Inputs JSON of a version's records in ``[start_ns, end_ns)``, newest first, at most ``limit``."""

    def versions_seen(self, models: Sequence[str], start_ns: int, end_ns: int) -> list[tuple[str, int]]:
        """(model, version) of every version of ``models`` with records in ``[start_ns, end_ns)``."""

    def trim(self, before_ns: int, keep: int) -> int:
        """Delete records older than ``before_ns``, then the oldest beyond ``keep``; returns how many went."""


class AlertStore(Protocol):
    """SLOs and the alerts their breaches raise."""

    def put_slo(self, slo: Slo) -> None:
        """Create or replace an SLO by id."""

    def list_slos(self, after: str | None, limit: int) -> list[Slo]:
        """SLOs ordered by id, after ``after``, at most ``limit``."""

    def set_breached(self, slo_id: str, breached: bool) -> None:
        """Record whether an SLO is breached now."""

    def add_alert(self, alert: Alert) -> Alert:
        """Store an alert under the next sequence (gap-free) and mark its SLO breached; returns it."""

    def list_alerts(self, after: int, limit: int) -> list[Alert]:
        """Alerts with a sequence above ``after``, oldest first, at most ``limit``."""
