"""Model versions: register (or reserve a number for an upload), read, list, update, delete."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace

from sqlalchemy import insert, select, update

from ferry_common.errors import FailedPrecondition, NotFound
from ferry_registry.domain import (
    ModelVersion,
    NewModelVersion,
)
from ferry_registry.resources import model_name, version_name
from ferry_registry.store._convert import (
    signature_to_json,
    version_from_row,
)
from ferry_registry.store._lookups import (
    SessionFactories,
    aliases_of,
    model_row,
    version_not_found,
)
from ferry_registry.store._statements import (
    MODELS,
    VERSION_SELECT,
    VERSIONS,
    label_terms,
)
from ferry_registry.store.rows import ModelRow, ModelVersionRow

__all__ = ["VersionTransactions"]


class VersionTransactions(SessionFactories):
    """Model versions: register (or reserve a number for an upload), read, list, update, delete."""

    # ---------------------------------------------------------------- versions

    def find_version_by_request(self, model_id: str, request_id: str) -> ModelVersion | None:
        query = VERSION_SELECT.where(VERSIONS.c.model_id == model_id, VERSIONS.c.request_id == request_id)
        with self._reads.begin() as session:
            row = session.connection().execute(query).first()
            return None if row is None else version_from_row(row)

    def reserve_version(self, model_id: str) -> int:
        with self._writes.begin() as session:
            row = model_row(session, model_id, lock=True)
            row.next_version += 1
            return row.next_version

    def release_version(self, model_id: str, version: int) -> None:
        with self._writes.begin() as session:
            session.execute(
                update(ModelRow)
                .where(ModelRow.model_id == model_id, ModelRow.next_version == version)
                .values(next_version=version - 1)
            )

    def create_version(
        self,
        model_id: str,
        new: NewModelVersion,
        request_id: str | None,
        *,
        reserved: int | None = None,
        artifact_key: str | None = None,
    ) -> tuple[ModelVersion, bool]:
        now = self._clock()
        with self._writes.begin() as session:
            connection = session.connection()
            model = connection.execute(
                select(MODELS.c.next_version, MODELS.c.latest_version)
                .where(MODELS.c.model_id == model_id)
                .with_for_update()
            ).first()
            if model is None:
                raise NotFound(f"model {model_name(model_id)!r} not found", field="parent")
            if request_id:
                existing = connection.execute(
                    VERSION_SELECT.where(VERSIONS.c.model_id == model_id, VERSIONS.c.request_id == request_id)
                ).first()
                if existing is not None:
                    return version_from_row(existing), False
            number = model.next_version + 1 if reserved is None else reserved
            connection.execute(
                update(MODELS)
                .where(MODELS.c.model_id == model_id)
                .values(
                    next_version=max(model.next_version, number),
                    latest_version=max(model.latest_version, number),
                    update_time=now,
                )
            )
            values = {
                "model_id": model_id,
                "version": number,
                "description": new.description,
                "artifact_uri": new.artifact.uri,
                "artifact_sha256": new.artifact.sha256,
                "artifact_size_bytes": new.artifact.size_bytes,
                "artifact_format": int(new.artifact.format),
                "artifact_key": artifact_key,
                "signature": signature_to_json(new.signature),
                "metrics": dict(new.metrics),
                "params": dict(new.params),
                "labels": dict(new.labels),
                "lineage_dataset_version": new.lineage.dataset_version,
                "lineage_split": new.lineage.split,
                "lineage_training_job": new.lineage.training_job,
                "lineage_code_revision": new.lineage.code_revision,
                "request_id": request_id or None,
                "create_time": now,
                "update_time": now,
            }
            connection.execute(insert(VERSIONS), values)
            return version_from_row(SimpleNamespace(**values, alias_ids=None)), True

    def get_version(self, model_id: str, version: int | None) -> ModelVersion:
        query = VERSION_SELECT.where(VERSIONS.c.model_id == model_id)
        if version is None:
            query = query.order_by(VERSIONS.c.version.desc()).limit(1)
        else:
            query = query.where(VERSIONS.c.version == version)
        with self._reads.begin() as session:
            row = session.connection().execute(query).first()
            if row is None:
                raise version_not_found(session, model_id, version)
            return version_from_row(row)

    def list_versions(
        self, model_id: str, labels: Mapping[str, str], before: int | None, limit: int
    ) -> list[ModelVersion]:
        query = (
            VERSION_SELECT.where(VERSIONS.c.model_id == model_id, *label_terms(ModelVersionRow, labels))
            .order_by(VERSIONS.c.version.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(VERSIONS.c.version < before)
        with self._reads.begin() as session:
            rows = list(session.connection().execute(query))
            if not rows:
                model_row(session, model_id)
            return [version_from_row(row) for row in rows]

    def update_version(
        self,
        model_id: str,
        version: int,
        description: str | None,
        labels: Mapping[str, str] | None,
        metrics: Mapping[str, float] | None,
    ) -> ModelVersion:
        with self._writes.begin() as session:
            model_row(session, model_id, lock=True)
            row = session.get(ModelVersionRow, (model_id, version))
            if row is None:
                raise version_not_found(session, model_id, version)
            if description is not None:
                row.description = description
            if labels is not None:
                row.labels = dict(labels)
            if metrics is not None:
                row.metrics = dict(metrics)
            row.update_time = self._clock()
            session.flush()
            query = VERSION_SELECT.where(VERSIONS.c.model_id == model_id, VERSIONS.c.version == version)
            return version_from_row(session.connection().execute(query).one())

    def delete_version(self, model_id: str, version: int) -> str | None:
        with self._writes.begin() as session:
            model_row(session, model_id, lock=True)
            row = session.get(ModelVersionRow, (model_id, version))
            if row is None:
                raise version_not_found(session, model_id, version)
            aliases = aliases_of(session, model_id, version)
            if aliases:
                raise FailedPrecondition(
                    f"model version {version_name(model_id, version)!r} is the target of alias(es) "
                    f"{', '.join(aliases)}: move or delete them first",
                    field="name",
                )
            key = row.artifact_key
            session.delete(row)
            return key
