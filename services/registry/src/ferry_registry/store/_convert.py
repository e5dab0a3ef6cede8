"""Rows (ORM objects or Core rows with the same column names) -> domain objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferry_registry.domain import (
    Alias,
    AliasEvent,
    AliasEventKind,
    Artifact,
    ArtifactFormat,
    Lineage,
    Model,
    ModelSignature,
    ModelVersion,
    TensorSpec,
)

__all__ = ["alias_from_row", "event_from_row", "model_from_row", "signature_to_json", "version_from_row"]


def model_from_row(row: Any) -> Model:
    return Model(
        model_id=row.model_id,
        description=row.description,
        labels=dict(row.labels),
        latest_version=row.latest_version,
        create_time=row.create_time,
        update_time=row.update_time,
    )


def signature_to_json(signature: ModelSignature) -> dict[str, Any]:
    def specs(items: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in items]

    return {"inputs": specs(signature.inputs), "outputs": specs(signature.outputs)}


def _signature(document: Mapping[str, Any]) -> ModelSignature:
    def specs(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(item["name"], item["datatype"], tuple(item["shape"])) for item in items)

    return ModelSignature(inputs=specs(document.get("inputs", [])), outputs=specs(document.get("outputs", [])))


def version_from_row(row: Any) -> ModelVersion:
    """A version from a row of ``statements.VERSION_SELECT`` (or anything with its attributes)."""
    return ModelVersion(
        model_id=row.model_id,
        version=row.version,
        description=row.description,
        artifact=Artifact(
            uri=row.artifact_uri,
            sha256=row.artifact_sha256,
            size_bytes=row.artifact_size_bytes,
            format=ArtifactFormat(row.artifact_format),
        ),
        signature=_signature(row.signature),
        metrics=dict(row.metrics),
        params=dict(row.params),
        lineage=Lineage(
            dataset_version=row.lineage_dataset_version,
            split=row.lineage_split,
            training_job=row.lineage_training_job,
            code_revision=row.lineage_code_revision,
        ),
        labels=dict(row.labels),
        aliases=tuple(sorted(row.alias_ids.split(","))) if row.alias_ids else (),
        create_time=row.create_time,
        update_time=row.update_time,
        artifact_key=row.artifact_key,
    )


def alias_from_row(row: Any) -> Alias:
    return Alias(
        model_id=row.model_id,
        alias_id=row.alias_id,
        version=row.version,
        revision=row.revision,
        update_time=row.update_time,
    )


def event_from_row(row: Any) -> AliasEvent:
    return AliasEvent(
        model_id=row.model_id,
        alias_id=row.alias_id,
        from_version=row.from_version,
        to_version=row.to_version,
        kind=AliasEventKind(row.kind),
        revision=row.revision,
        actor=row.actor,
        reason=row.reason,
        create_time=row.create_time,
    )
