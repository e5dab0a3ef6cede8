"""SLOs and alerts on SQLAlchemy 2.x (SQLite or PostgreSQL).

An alert's sequence is the highest stored plus one, read and inserted in one write
transaction (SQLite: under the write lock; PostgreSQL: two writers racing for the same
number collide on the primary key and the loser fails rather than leaving a gap).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session

from ferry_common.database import Database
from ferry_monitor.domain import SpanFilter
from ferry_monitor.slos import Alert, AlertKind, BreachAction, Slo
from ferry_monitor.store.rows import alerts as a
from ferry_monitor.store.rows import slos as s
from ferry_monitor.store.upsert import upsert

__all__ = ["SqlAlertStore", "insert_alert"]

_FILTER_COLUMNS = ("service", "method", "deployment", "model", "version", "route")


def _slo(row: RowMapping) -> Slo:
    return Slo(
        slo_id=row["slo_id"],
        filter=SpanFilter(**{c: row[c] for c in _FILTER_COLUMNS}),
        percentile=float(row["percentile"]),
        latency_threshold_ms=float(row["latency_threshold_ms"]),
        max_error_rate=float(row["max_error_rate"]),
        window_seconds=int(row["window_seconds"]),
        min_count=int(row["min_count"]),
        action=BreachAction(int(row["action"])),
        breached=bool(row["breached"]),
    )


def _alert(row: RowMapping) -> Alert:
    return Alert(
        sequence=int(row["sequence"]),
        kind=AlertKind(int(row["kind"])),
        slo=row["slo"],
        model_version=row["model_version"],
        deployment=row["deployment"],
        message=row["message"],
        action=BreachAction(int(row["action"])),
        action_result=row["action_result"],
        create_time_ns=int(row["create_time_ns"]),
    )


def insert_alert(session: Session, alert: Alert) -> Alert:
    """Insert ``alert`` under the next sequence in the caller's write transaction; returns it."""
    last = session.execute(sa.select(sa.func.max(a.c.sequence))).scalar()
    stored = dataclasses.replace(alert, sequence=int(last or 0) + 1)
    values = dataclasses.asdict(stored)
    values["kind"] = int(stored.kind)
    values["action"] = int(stored.action)
    session.execute(sa.insert(a).values(**values))
    return stored


class SqlAlertStore:
    """:class:`~ferry_monitor.store.base.AlertStore` on a :class:`~ferry_common.database.Database`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def put_slo(self, slo: Slo) -> None:
        values: dict[str, Any] = {
            **dataclasses.asdict(slo.filter),
            "percentile": slo.percentile,
            "latency_threshold_ms": slo.latency_threshold_ms,
            "max_error_rate": slo.max_error_rate,
            "window_seconds": slo.window_seconds,
            "min_count": slo.min_count,
            "action": int(slo.action),
            "breached": slo.breached,
        }
        with self._database.writes.begin() as session:
            upsert(session, s, {"slo_id": slo.slo_id}, values)

    def list_slos(self, after: str | None, limit: int) -> list[Slo]:
        query = sa.select(s).order_by(s.c.slo_id).limit(limit)
        if after is not None:
            query = query.where(s.c.slo_id > after)
        with self._database.reads.begin() as session:
            return [_slo(row) for row in session.execute(query).mappings()]

    def set_breached(self, slo_id: str, breached: bool) -> None:
        with self._database.writes.begin() as session:
            session.execute(sa.update(s).where(s.c.slo_id == slo_id).values(breached=breached))

    def add_alert(self, alert: Alert) -> Alert:
        with self._database.writes.begin() as session:
            stored = insert_alert(session, alert)
            if alert.slo.startswith("slos/"):
                slo_id = alert.slo.removeprefix("slos/")
                session.execute(sa.update(s).where(s.c.slo_id == slo_id).values(breached=True))
        return stored

    def list_alerts(self, after: int, limit: int) -> list[Alert]:
        query = sa.select(a).where(a.c.sequence > after).order_by(a.c.sequence).limit(limit)
        with self._database.reads.begin() as session:
            return [_alert(row) for row in session.execute(query).mappings()]
