"""Models: create, read, list, update, delete (with their versions)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ferry_common.errors import AlreadyExists, FailedPrecondition
from ferry_registry.domain import (
    Model,
)
from ferry_registry.resources import model_name
from ferry_registry.store._convert import (
    model_from_row,
)
from ferry_registry.store._lookups import (
    SessionFactories,
    model_row,
)
from ferry_registry.store._statements import (
    label_terms,
)
from ferry_registry.store.rows import AliasRow, ModelRow, ModelVersionRow

__all__ = ["ModelTransactions"]


class ModelTransactions(SessionFactories):
    """Models: create, read, list, update, delete (with their versions)."""

    # ------------------------------------------------------------------ models

    def create_model(self, model_id: str, description: str, labels: Mapping[str, str]) -> Model:
        now = self._clock()
        try:
            with self._writes.begin() as session:
                if session.get(ModelRow, model_id) is not None:
                    raise AlreadyExists(f"model {model_name(model_id)!r} already exists", field="model_id")
                row = ModelRow(
                    model_id=model_id,
                    description=description,
                    labels=dict(labels),
                    latest_version=0,
                    next_version=0,
                    create_time=now,
                    update_time=now,
                )
                session.add(row)
                session.flush()
                return model_from_row(row)
        except IntegrityError:
            # Another process created it between our check and our insert.
            raise AlreadyExists(f"model {model_name(model_id)!r} already exists", field="model_id") from None

    def get_model(self, model_id: str) -> Model:
        with self._reads.begin() as session:
            return model_from_row(model_row(session, model_id))

    def list_models(self, labels: Mapping[str, str], after: str | None, limit: int) -> list[Model]:
        query = select(ModelRow).where(*label_terms(ModelRow, labels)).order_by(ModelRow.model_id).limit(limit)
        if after is not None:
            query = query.where(ModelRow.model_id > after)
        with self._reads.begin() as session:
            return [model_from_row(row) for row in session.scalars(query)]

    def update_model(self, model_id: str, description: str | None, labels: Mapping[str, str] | None) -> Model:
        with self._writes.begin() as session:
            row = model_row(session, model_id, lock=True)
            if description is not None:
                row.description = description
            if labels is not None:
                row.labels = dict(labels)
            row.update_time = self._clock()
            session.flush()
            return model_from_row(row)

    def delete_model(self, model_id: str, force: bool) -> list[str]:
        with self._writes.begin() as session:
            model_row(session, model_id, lock=True)
            aliases = list(
                session.scalars(
                    select(AliasRow.alias_id).where(AliasRow.model_id == model_id).order_by(AliasRow.alias_id)
                )
            )
            if aliases:
                raise FailedPrecondition(
                    f"model {model_name(model_id)!r} still has aliases ({', '.join(aliases)}): delete them first "
                    "(DeleteModel refuses while aliases exist, even with force)",
                    field="name",
                )
            versions = session.execute(
                select(ModelVersionRow.version, ModelVersionRow.artifact_key).where(
                    ModelVersionRow.model_id == model_id
                )
            ).all()
            if versions and not force:
                raise FailedPrecondition(
                    f"model {model_name(model_id)!r} has {len(versions)} version(s): delete them first or set force",
                    field="force",
                )
            session.execute(delete(ModelVersionRow).where(ModelVersionRow.model_id == model_id))
            session.execute(delete(ModelRow).where(ModelRow.model_id == model_id))
            return [key for _, key in versions if key]
