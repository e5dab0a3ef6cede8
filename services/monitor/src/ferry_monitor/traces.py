"""A bounded store of recent traces, in memory, for GetTrace.

Spans are kept as their OTLP bytes (about 150-400 bytes for a gRPC span), grouped by
trace. The store holds at most ``capacity_bytes`` of them: when a new span would pass
the bound, whole traces are evicted, least recently extended first. A trace keeps at
most ``max_spans_per_trace`` spans (more are still aggregated, not kept). A span sent
twice (an exporter's retry) is kept once. Not persisted: a restart starts empty.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

from ferry_monitor.domain import StoredSpan

__all__ = ["TraceStore"]

# Accounting for the dict entries and objects around each span's bytes.
_OVERHEAD_BYTES = 200


class TraceStore:
    """Recent traces by trace id (16 bytes)."""

    def __init__(self, capacity_bytes: int, max_spans_per_trace: int) -> None:
        self._capacity = capacity_bytes
        self._max_spans = max_spans_per_trace
        self._traces: OrderedDict[bytes, dict[bytes, StoredSpan]] = OrderedDict()
        self._sizes: dict[bytes, int] = {}
        self._bytes = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._traces)

    def add(self, spans: Mapping[bytes, Iterable[StoredSpan]]) -> None:
        """Keep ``spans`` (by trace id), evicting the least recently extended traces to stay bounded."""
        for trace_id, items in spans.items():
            trace = self._traces.get(trace_id)
            if trace is None:
                trace = self._traces[trace_id] = {}
                self._sizes[trace_id] = 0
            else:
                self._traces.move_to_end(trace_id)
            added = 0
            for span in items:
                if span.span_id in trace or len(trace) >= self._max_spans:
                    continue
                trace[span.span_id] = span
                added += len(span.data) + _OVERHEAD_BYTES
            self._sizes[trace_id] += added
            self._bytes += added
        while self._bytes > self._capacity and self._traces:
            evicted, _ = self._traces.popitem(last=False)
            self._bytes -= self._sizes.pop(evicted)

    def get(self, trace_id: bytes) -> list[StoredSpan] | None:
        """The spans of a trace ordered by start time, or None when unknown or evicted."""
        trace = self._traces.get(trace_id)
        if trace is None:
            return None
        return sorted(trace.values(), key=lambda span: (span.start_ns, span.span_id))
