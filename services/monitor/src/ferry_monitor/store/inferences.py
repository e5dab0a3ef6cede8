"""Inference records on SQLAlchemy 2.x (SQLite or PostgreSQL): samples in, feedback on, labeled rows out."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from ferry_common.database import Database
from ferry_monitor.inferences import Feedback, InferenceRecord
from ferry_monitor.store.rows import inference_records as t

__all__ = ["SqlInferenceStore"]

_CHUNK = 500


class SqlInferenceStore:
    """:class:`~ferry_monitor.store.base.InferenceStore` on a :class:`~ferry_common.database.Database`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def add_records(self, records: Sequence[InferenceRecord]) -> int:
        if not records:
            return 0
        rows = [
            {
                "request_id": r.request_id,
                "deployment": r.deployment,
                "model": r.model,
                "version": r.version,
                "route": r.route,
                "time_ns": r.time_ns,
                "latency_ms": r.latency_ms,
                "inputs": r.inputs_json,
                "outputs": r.outputs_json,
                "shadow_comparison": r.shadow_comparison,
            }
            for r in records
        ]
        with self._database.writes.begin() as session:
            session.execute(sa.insert(t), rows)
        return len(rows)

    def add_feedback(self, feedback: Sequence[Feedback]) -> list[str]:
        truths = {item.request_id: item.ground_truth_json for item in feedback}  # the last one wins
        ids = list(truths)
        known: set[str] = set()
        with self._database.writes.begin() as session:
            for index in range(0, len(ids), _CHUNK):
                chunk = ids[index : index + _CHUNK]
                query = sa.select(t.c.request_id).where(t.c.request_id.in_(chunk)).distinct()
                known.update(session.execute(query).scalars())
            if known:
                session.execute(
                    sa.update(t)
                    .where(t.c.request_id == sa.bindparam("rid"))
                    .values(ground_truth=sa.bindparam("truth"))
                    .execution_options(synchronize_session=False),
                    [{"rid": rid, "truth": truths[rid]} for rid in sorted(known)],
                )
        return [rid for rid in ids if rid not in known]

    def labeled(self, model: str, version: int, route: str, start_ns: int, end_ns: int) -> list[tuple[str, str]]:
        query = sa.select(t.c.outputs, t.c.ground_truth).where(
            t.c.model == model,
            t.c.version == version,
            t.c.time_ns >= start_ns,
            t.c.time_ns < end_ns,
            t.c.ground_truth.is_not(None),
        )
        if route:
            query = query.where(t.c.route == route)
        with self._database.reads.begin() as session:
            return [(row.outputs, row.ground_truth) for row in session.execute(query)]

    def inputs(self, model: str, version: int, start_ns: int, end_ns: int, limit: int) -> list[str]:
        query = (
            sa.select(t.c.inputs)
            .where(t.c.model == model, t.c.version == version, t.c.time_ns >= start_ns, t.c.time_ns < end_ns)
            .order_by(t.c.time_ns.desc(), t.c.id.desc())
            .limit(limit)
        )
        with self._database.reads.begin() as session:
            return list(session.execute(query).scalars())

    def versions_seen(self, models: Sequence[str], start_ns: int, end_ns: int) -> list[tuple[str, int]]:
        if not models:
            return []
        query = (
            sa.select(t.c.model, t.c.version)
            .where(t.c.model.in_(list(models)), t.c.time_ns >= start_ns, t.c.time_ns < end_ns)
            .distinct()
            .order_by(t.c.model, t.c.version)
        )
        with self._database.reads.begin() as session:
            return [(row.model, int(row.version)) for row in session.execute(query)]

    def trim(self, before_ns: int, keep: int) -> int:
        with self._database.writes.begin() as session:
            deleted = int(session.execute(sa.delete(t).where(t.c.time_ns < before_ns)).rowcount or 0)  # type: ignore[attr-defined]
            cut = session.execute(sa.select(t.c.id).order_by(t.c.id.desc()).offset(keep).limit(1)).scalar()
            if cut is not None:
                deleted += int(session.execute(sa.delete(t).where(t.c.id <= cut)).rowcount or 0)  # type: ignore[attr-defined]
            return deleted
