"""The train store on SQLAlchemy 2.x (SQLite or PostgreSQL).

Every write locks the job's row first (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
write transactions hold the database lock from ``BEGIN IMMEDIATE``), so each job's
event sequence is handed out gap-free and in commit order.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ferry_common.database import Database
from ferry_common.errors import AlreadyExists, FailedPrecondition, NotFound
from ferry_train.spec import JobSpec
from ferry_train.store._spec import spec_from_json, spec_to_json
from ferry_train.store.base import QUEUED, RUNNING, TERMINAL, TRANSITIONS, Job, JobEvent
from ferry_train.store.rows import events, jobs

__all__ = ["SqlTrainStore"]

_ACTIVE = (RUNNING, "CANCELLING")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _utc(value: datetime.datetime | None) -> datetime.datetime | None:
    # SQLite gives naive datetimes back.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=datetime.UTC)


def _job(row: RowMapping) -> Job:
    return Job(
        job_id=row["job_id"],
        spec=spec_from_json(row["spec"]),
        state=row["state"],
        error=row["error"],
        attempt=row["attempt"],
        current_epoch=row["current_epoch"],
        metrics=dict(row["metrics"]),
        model_version=row["model_version"],
        checkpoint_uri=row["checkpoint_uri"],
        last_sequence=row["last_sequence"],
        create_time=_utc(row["create_time"]),
        start_time=_utc(row["start_time"]),
        end_time=_utc(row["end_time"]),
        environment=dict(row["environment"] or {}),
    )


def _not_found(job_id: str) -> NotFound:
    return NotFound(f"name: trainingJobs/{job_id} not found", field="name")


class SqlTrainStore:
    """:class:`~ferry_train.store.base.TrainStore` on a :class:`~ferry_common.database.Database`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _locked(session: Session, job_id: str) -> RowMapping:
        row = session.execute(sa.select(jobs).where(jobs.c.job_id == job_id).with_for_update()).mappings().first()
        if row is None:
            raise _not_found(job_id)
        return row

    @staticmethod
    def _append(
        connection: Session | Connection, job_id: str, sequence: int, kind: str, payload: Mapping[str, Any]
    ) -> None:
        connection.execute(
            sa.insert(events).values(job_id=job_id, sequence=sequence, time=_now(), kind=kind, payload=dict(payload))
        )

    def _update(self, session: Session, job_id: str, **values: Any) -> Job:
        session.execute(sa.update(jobs).where(jobs.c.job_id == job_id).values(**values))
        row = session.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).mappings().one()
        return _job(row)

    # ---------------------------------------------------------------- jobs

    def create(self, job_id: str, spec: JobSpec, request_id: str | None) -> tuple[Job, bool]:
        with self._database.writes.begin() as session:
            if request_id:
                row = session.execute(sa.select(jobs).where(jobs.c.request_id == request_id)).mappings().first()
                if row is not None:
                    return _job(row), False
            if session.execute(sa.select(jobs.c.job_id).where(jobs.c.job_id == job_id)).first() is not None:
                raise AlreadyExists(f"training_job_id: trainingJobs/{job_id} already exists", field="training_job_id")
            now = _now()
            try:
                session.execute(
                    sa.insert(jobs).values(
                        job_id=job_id,
                        spec=spec_to_json(spec),
                        state=QUEUED,
                        error="",
                        attempt=0,
                        current_epoch=0,
                        metrics={},
                        model_version="",
                        checkpoint_uri="",
                        last_sequence=1,
                        request_id=request_id or None,
                        create_time=now,
                    )
                )
                self._append(session, job_id, 1, "state", {"state": QUEUED, "message": "created"})
                session.flush()
            except IntegrityError:
                raise AlreadyExists(
                    f"training_job_id: trainingJobs/{job_id} already exists", field="training_job_id"
                ) from None
            row = session.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).mappings().one()
            return _job(row), True

    def get(self, job_id: str) -> Job:
        with self._database.reads.begin() as session:
            row = session.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).mappings().first()
        if row is None:
            raise _not_found(job_id)
        return _job(row)

    def list_jobs(
        self,
        states: frozenset[str],
        register_model: str | None,
        after: tuple[datetime.datetime, str] | None,
        limit: int,
    ) -> list[Job]:
        query = sa.select(jobs)
        if states:
            query = query.where(jobs.c.state.in_(sorted(states)))
        if after is not None:
            time = after[0]
            query = query.where(
                sa.or_(
                    jobs.c.create_time < time,
                    sa.and_(jobs.c.create_time == time, jobs.c.job_id < after[1]),
                )
            )
        query = query.order_by(jobs.c.create_time.desc(), jobs.c.job_id.desc())
        with self._database.reads.begin() as session:
            rows = session.execute(query).mappings().all()
            found: list[Job] = []
            # register_model lives in the spec JSON: filtered here rather than in SQL.
            for row in rows:
                job = _job(row)
                if register_model is None or job.spec.register_model == register_model:
                    found.append(job)
                    if len(found) >= limit:
                        break
            return found

    def append_event(self, job_id: str, kind: str, payload: Mapping[str, Any]) -> int:
        with self._database.writes.begin() as session:
            row = self._locked(session, job_id)
            sequence = int(row["last_sequence"]) + 1
            self._append(session, job_id, sequence, kind, payload)
            session.execute(sa.update(jobs).where(jobs.c.job_id == job_id).values(last_sequence=sequence))
            return sequence

    def set_state(
        self,
        job_id: str,
        state: str,
        *,
        message: str = "",
        expected: frozenset[str] | None = None,
        error: str | None = None,
        model_version: str | None = None,
        metrics: Mapping[str, float] | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> Job:
        with self._database.writes.begin() as session:
            row = self._locked(session, job_id)
            current = row["state"]
            if state not in TRANSITIONS[current] or (expected is not None and current not in expected):
                raise FailedPrecondition(
                    f"name: trainingJobs/{job_id} is STATE_{current}; it cannot become STATE_{state}", field="name"
                )
            sequence = int(row["last_sequence"]) + 1
            self._append(session, job_id, sequence, "state", {"state": state, "message": message})
            values: dict[str, Any] = {"state": state, "last_sequence": sequence}
            if state in TERMINAL:
                values["end_time"] = _now()
            elif state == QUEUED:
                values["end_time"] = None
                values["error"] = ""
            if error is not None:
                values["error"] = error
            if model_version is not None:
                values["model_version"] = model_version
            if metrics is not None:
                values["metrics"] = dict(metrics)
            if environment is not None:
                values["environment"] = dict(environment)
            return self._update(session, job_id, **values)

    def record_epoch(self, job_id: str, epoch: int, metrics: Mapping[str, float], checkpoint_uri: str) -> int:
        with self._database.writes.begin() as session:
            row = self._locked(session, job_id)
            sequence = int(row["last_sequence"]) + 1
            self._append(session, job_id, sequence, "epoch", {"epoch": epoch, "metrics": dict(metrics)})
            session.execute(
                sa.update(jobs)
                .where(jobs.c.job_id == job_id)
                .values(
                    last_sequence=sequence,
                    current_epoch=epoch + 1,
                    metrics=dict(metrics),
                    checkpoint_uri=checkpoint_uri or row["checkpoint_uri"],
                )
            )
            return sequence

    def next_queued(self, limit: int) -> list[Job]:
        query = sa.select(jobs).where(jobs.c.state == QUEUED).order_by(jobs.c.create_time, jobs.c.job_id).limit(limit)
        with self._database.reads.begin() as session:
            return [_job(row) for row in session.execute(query).mappings().all()]

    def claim(self, job_id: str) -> Job | None:
        with self._database.writes.begin() as session:
            row = self._locked(session, job_id)
            if row["state"] != QUEUED:
                return None
            attempt = int(row["attempt"]) + 1
            sequence = int(row["last_sequence"]) + 1
            self._append(session, job_id, sequence, "state", {"state": RUNNING, "message": f"attempt {attempt}"})
            return self._update(
                session,
                job_id,
                state=RUNNING,
                attempt=attempt,
                last_sequence=sequence,
                start_time=row["start_time"] or _now(),
            )

    def active(self) -> list[Job]:
        query = sa.select(jobs).where(jobs.c.state.in_(_ACTIVE)).order_by(jobs.c.create_time)
        with self._database.reads.begin() as session:
            return [_job(row) for row in session.execute(query).mappings().all()]

    def events_since(self, job_id: str, since_sequence: int, limit: int) -> list[JobEvent]:
        query = (
            sa.select(events)
            .where(events.c.job_id == job_id, events.c.sequence > since_sequence)
            .order_by(events.c.sequence)
            .limit(limit)
        )
        with self._database.reads.begin() as session:
            rows = session.execute(query).mappings().all()
        return [
            JobEvent(
                job_id=row["job_id"],
                sequence=int(row["sequence"]),
                time=_utc(row["time"]) or _now(),
                kind=row["kind"],
                payload=dict(row["payload"]),
            )
            for row in rows
        ]
