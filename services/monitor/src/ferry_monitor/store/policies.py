"""Model policies, drift and accuracy breach states on SQLAlchemy 2.x (SQLite or PostgreSQL).

A drift (accuracy) alert and the breach state it records are written in one transaction
(:meth:`SqlPolicyStore.record_breach`, :meth:`SqlPolicyStore.record_accuracy_breach`), so a
restart neither repeats nor forgets an alert.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session

from ferry_common.database import Database
from ferry_monitor.policies import AccuracyState, DriftState, ModelPolicy
from ferry_monitor.slos import Alert
from ferry_monitor.store.alerts import insert_alert
from ferry_monitor.store.rows import accuracy_states as q
from ferry_monitor.store.rows import drift_states as d
from ferry_monitor.store.rows import model_policies as p
from ferry_monitor.store.upsert import upsert

__all__ = ["SqlPolicyStore"]


def _policy(row: RowMapping) -> ModelPolicy:
    return ModelPolicy(
        model=row["model"],
        drift_threshold=float(row["drift_threshold"]),
        retrain_on_drift=bool(row["retrain_on_drift"]),
        min_accuracy=float(row["min_accuracy"]),
    )


def _state(row: RowMapping) -> DriftState:
    return DriftState(
        model=row["model"],
        version=int(row["version"]),
        breached=bool(row["breached"]),
        breaches=int(row["breaches"]),
        training_job=row["training_job"],
    )


def _put_state(session: Session, state: DriftState) -> None:
    values = {"breached": state.breached, "breaches": state.breaches, "training_job": state.training_job}
    upsert(session, d, {"model": state.model, "version": state.version}, values)


def _put_accuracy_state(session: Session, state: AccuracyState) -> None:
    values = {"breached": state.breached, "breaches": state.breaches}
    upsert(session, q, {"model": state.model, "version": state.version}, values)


class SqlPolicyStore:
    """:class:`~ferry_monitor.drift.PolicyStore` on a :class:`~ferry_common.database.Database`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def put_policy(self, policy: ModelPolicy) -> None:
        values = {
            "drift_threshold": policy.drift_threshold,
            "retrain_on_drift": policy.retrain_on_drift,
            "min_accuracy": policy.min_accuracy,
            "update_time_ns": time.time_ns(),
        }
        with self._database.writes.begin() as session:
            upsert(session, p, {"model": policy.model}, values)

    def get_policy(self, model: str) -> ModelPolicy | None:
        with self._database.reads.begin() as session:
            row = session.execute(sa.select(p).where(p.c.model == model)).mappings().first()
            return _policy(row) if row is not None else None

    def list_policies(self) -> list[ModelPolicy]:
        with self._database.reads.begin() as session:
            return [_policy(row) for row in session.execute(sa.select(p).order_by(p.c.model)).mappings()]

    def get_state(self, model: str, version: int) -> DriftState:
        key = (d.c.model == model) & (d.c.version == version)
        with self._database.reads.begin() as session:
            row = session.execute(sa.select(d).where(key)).mappings().first()
            return _state(row) if row is not None else DriftState(model, version)

    def put_state(self, state: DriftState) -> None:
        with self._database.writes.begin() as session:
            _put_state(session, state)

    def record_breach(self, state: DriftState, alert: Alert) -> Alert:
        with self._database.writes.begin() as session:
            stored = insert_alert(session, alert)
            _put_state(session, state)
        return stored

    def get_accuracy_state(self, model: str, version: int) -> AccuracyState:
        key = (q.c.model == model) & (q.c.version == version)
        with self._database.reads.begin() as session:
            row = session.execute(sa.select(q).where(key)).mappings().first()
        if row is None:
            return AccuracyState(model, version)
        return AccuracyState(model, version, breached=bool(row["breached"]), breaches=int(row["breaches"]))

    def put_accuracy_state(self, state: AccuracyState) -> None:
        with self._database.writes.begin() as session:
            _put_accuracy_state(session, state)

    def record_accuracy_breach(self, state: AccuracyState, alert: Alert) -> Alert:
        with self._database.writes.begin() as session:
            stored = insert_alert(session, alert)
            _put_accuracy_state(session, state)
        return stored
