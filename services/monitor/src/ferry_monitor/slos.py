"""SLOs and alerts: domain objects, the evaluator and the alert feed. Imports no grpc.

Evaluation: every ``evaluate_seconds`` each SLO is judged over the last ``window_seconds``
(widened to whole latency buckets) from the persisted latency aggregates of the spans its
filter matches (per route when the spans carry ``ferry.route``). It is *breached* when at
least ``min_count`` spans matched and either the percentile exceeds
``latency_threshold_ms`` (when > 0) or the error rate exceeds ``max_error_rate`` (when > 0).

Alert rule: an alert is raised when an SLO goes from not breached to breached, never
again while the breach persists. The SLO re-arms once an evaluation finds it not
breached (including too few spans in the window). The breached flag is persisted, so a
restart neither repeats nor forgets an alert. Changing an SLO with SetSlo re-arms it.

Action ``STOP_CANARY`` (an SLO on a deployment's ``canary`` route) sets that deployment's
canary percent to 0 through serve; the alert records what was done and its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from ferry_common.database import DatabaseRunner
from ferry_common.errors import InvalidArgument
from ferry_common.logs import get_logger
from ferry_monitor import metrics, sketches
from ferry_monitor.domain import BUCKET_SECONDS, SpanFilter, TimeRange
from ferry_monitor.store.base import AlertStore, LatencyStore

__all__ = ["Alert", "AlertKind", "BreachAction", "CanaryControl", "Slo", "SloService"]

_log = get_logger("ferry.monitor.slos")
_NS = 1_000_000_000
_WATCH_BATCH = 100


class BreachAction(enum.IntEnum):
    """What to do on a breach (the values of ``ferry.monitor.v1.BreachAction``)."""

    ALERT = 1
    STOP_CANARY = 2
    ROLLBACK = 3


class AlertKind(enum.IntEnum):
    """What raised an alert (the values of ``ferry.monitor.v1.AlertKind``)."""

    SLO_BREACH = 1
    DRIFT = 2
    PERFORMANCE = 3


@dataclass(frozen=True)
class Slo:
    """A service-level objective over the spans ``filter`` matches."""

    slo_id: str
    filter: SpanFilter
    percentile: float
    latency_threshold_ms: float
    max_error_rate: float
    window_seconds: int
    min_count: int
    action: BreachAction = BreachAction.ALERT
    breached: bool = False

    def validate(self) -> None:
        """Rules that involve several fields; each error names the field to change."""
        if self.action == BreachAction.ROLLBACK:
            raise InvalidArgument("slo.action: BREACH_ACTION_ROLLBACK is not supported yet", field="slo.action")
        if self.action == BreachAction.STOP_CANARY:
            if not self.filter.deployment:
                raise InvalidArgument(
                    "slo.filter.deployment: BREACH_ACTION_STOP_CANARY needs the deployment",
                    field="slo.filter.deployment",
                )
            if self.filter.route != "canary":
                raise InvalidArgument(
                    f"slo.filter.route: {self.filter.route!r} must be 'canary' for BREACH_ACTION_STOP_CANARY",
                    field="slo.filter.route",
                )


@dataclass(frozen=True)
class Alert:
    """A persisted alert; ``sequence`` is gap-free and increasing."""

    sequence: int
    kind: AlertKind
    slo: str
    model_version: str
    deployment: str
    message: str
    action: BreachAction
    action_result: str
    create_time_ns: int


class CanaryControl(Protocol):
    """Serve, as far as monitor acts on it."""

    async def stop_canary(self, deployment: str) -> str:
        """Set the deployment's canary percent to 0; returns what was done (raises on failure)."""


@dataclass(frozen=True)
class _Verdict:
    breached: bool
    message: str


class SloService:
    """SetSlo/ListSlos, the evaluator task, ListAlerts and WatchAlerts."""

    def __init__(
        self,
        store: AlertStore,
        latency: LatencyStore,
        runner: DatabaseRunner,
        cache: sketches.SketchCache,
        canary: CanaryControl | None,
        *,
        evaluate_seconds: float = 5.0,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._store = store
        self._latency = latency
        self._runner = runner
        self._cache = cache
        self._canary = canary
        self._evaluate_seconds = evaluate_seconds
        self._clock = clock
        self._evaluator: asyncio.Task[None] | None = None
        # Set (and replaced) whenever alerts are added: each watcher waits on the one it saw
        # before reading, so no wake-up is lost between its read and its wait.
        self._changed = asyncio.Event()
        self._draining = False

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the evaluator (every ``evaluate_seconds``)."""
        self._evaluator = asyncio.create_task(self._evaluate_forever(), name="ferry-monitor-slos")

    def drain(self) -> None:
        """End every WatchAlerts stream (the server is draining)."""
        self._draining = True
        self._notify()

    async def stop(self) -> None:
        """Stop the evaluator."""
        self.drain()
        if self._evaluator is not None:
            self._evaluator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._evaluator

    async def _evaluate_forever(self) -> None:
        while True:
            await asyncio.sleep(self._evaluate_seconds)
            try:
                await self.evaluate()
            except Exception as error:  # a lost database or serve: try again at the next round
                _log.warning("slo evaluation failed", error=str(error))

    # ---------------------------------------------------------------- SLOs

    async def set_slo(self, slo: Slo) -> Slo:
        """Create or replace an SLO (re-armed: not breached)."""
        slo.validate()
        stored = replace(slo, breached=False)
        await self._runner.write(self._store.put_slo, stored)
        return stored

    async def list_slos(self, after: str | None, limit: int) -> list[Slo]:
        """SLOs by id after ``after``, at most ``limit``."""
        return await self._runner.read(self._store.list_slos, after, limit)

    # ---------------------------------------------------------------- evaluation

    def _judge(self, slo: Slo, now_ns: int) -> _Verdict:
        end = now_ns // _NS
        start = end - slo.window_seconds
        time_range = TimeRange(start // BUCKET_SECONDS * BUCKET_SECONDS, end // BUCKET_SECONDS * BUCKET_SECONDS + 1)
        buckets = self._latency.buckets(slo.filter, time_range)
        count = sum(b.count for b in buckets)
        if count == 0 or count < slo.min_count:
            return _Verdict(False, "")
        errors = sum(b.error_count for b in buckets)
        reasons = []
        if slo.latency_threshold_ms > 0:
            total = sketches.merged(*(self._cache.get((b.bucket_start, b.key), b.count, b.sketch) for b in buckets))
            value = min(sketches.quantile(total, slo.percentile / 100), max(b.max_ms for b in buckets))
            if value > slo.latency_threshold_ms:
                reasons.append(f"p{slo.percentile:g} latency {value:.1f} ms > {slo.latency_threshold_ms:g} ms")
        rate = errors / count
        if slo.max_error_rate > 0 and rate > slo.max_error_rate:
            reasons.append(f"error rate {rate:.3f} > {slo.max_error_rate:g}")
        if not reasons:
            return _Verdict(False, "")
        return _Verdict(True, f"slos/{slo.slo_id}: {'; '.join(reasons)} over {count} spans in {slo.window_seconds} s")

    async def evaluate(self) -> list[Alert]:
        """Judge every SLO once; returns the alerts raised."""
        now = self._clock()
        raised: list[Alert] = []
        for slo in await self._runner.read(self._store.list_slos, None, 1_000_000):
            verdict = await self._runner.read(self._judge, slo, now)
            if verdict.breached == slo.breached:
                continue
            if not verdict.breached:
                await self._runner.write(self._store.set_breached, slo.slo_id, False)
                continue
            result = await self._act(slo)
            alert = await self._runner.write(self._store.add_alert, self._alert(slo, verdict.message, result, now))
            _log.warning("slo breached", slo=slo.slo_id, sequence=alert.sequence, action_result=result)
            metrics.observe_alert("slo_breach")
            raised.append(alert)
        if raised:
            self._notify()
        return raised

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def alerts_added(self) -> None:
        """Wake every WatchAlerts stream: another part of monitor (drift) stored alerts."""
        self._notify()

    def _alert(self, slo: Slo, message: str, result: str, now_ns: int) -> Alert:
        f = slo.filter
        return Alert(
            sequence=0,  # assigned by the store
            kind=AlertKind.SLO_BREACH,
            slo=f"slos/{slo.slo_id}",
            model_version=f"models/{f.model}/versions/{f.version}" if f.model and f.version else "",
            deployment=f"deployments/{f.deployment}" if f.deployment else "",
            message=message,
            action=slo.action,
            action_result=result,
            create_time_ns=now_ns,
        )

    async def _act(self, slo: Slo) -> str:
        if slo.action != BreachAction.STOP_CANARY:
            return ""
        if self._canary is None:
            return "error: no serve client configured"
        try:
            return await self._canary.stop_canary(slo.filter.deployment)
        except Exception as error:  # recorded on the alert: the breach is still worth raising
            return f"error: {error}"

    # ---------------------------------------------------------------- alerts out

    async def list_alerts(self, after: int, limit: int) -> list[Alert]:
        """Alerts with a sequence above ``after``, oldest first, at most ``limit``."""
        return await self._runner.read(self._store.list_alerts, after, limit)

    async def watch(self, since: int, poll_seconds: float = 1.0) -> AsyncIterator[Alert]:
        """Every alert after ``since`` (exclusive), then new ones as raised; ends on drain.

        Polls the database too (every ``poll_seconds``), so alerts raised by another
        replica on the same database arrive as well.
        """
        last = since
        while not self._draining:
            changed = self._changed
            batch = await self.list_alerts(last, _WATCH_BATCH)
            for alert in batch:
                if self._draining:
                    return
                yield alert
                last = alert.sequence
            if len(batch) == _WATCH_BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), poll_seconds)
