"""Request messages of ``ferry.registry.v1`` from Pythonic arguments (both client flavours)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeAlias

from google.protobuf import field_mask_pb2

from ferry.registry.v1 import registry_pb2 as pb
from ferry_sdk._sources import Source

__all__ = [
    "ArtifactFormatLike",
    "LineageLike",
    "SignatureLike",
    "artifact_format",
    "batch_set_request",
    "model_name",
    "set_alias_request",
    "update_model_request",
    "update_version_request",
    "version_message",
]

ArtifactFormatLike: TypeAlias = "str | pb.ArtifactFormat | None"
"""``"onnx"``, ``"torchscript"``, an ``ArtifactFormat`` value, or ``None`` (from the file name; ONNX)."""
LineageLike: TypeAlias = "pb.Lineage | Mapping[str, str] | None"
"""A ``Lineage`` or its fields as a dict (``dataset_version``, ``split``, ``training_job``, ``code_revision``)."""
SignatureLike: TypeAlias = "pb.ModelSignature | None"

_FORMATS = {
    "onnx": pb.ARTIFACT_FORMAT_ONNX,
    "torchscript": pb.ARTIFACT_FORMAT_TORCHSCRIPT,
}
_SUFFIXES = {
    ".onnx": pb.ARTIFACT_FORMAT_ONNX,
    ".pt": pb.ARTIFACT_FORMAT_TORCHSCRIPT,
    ".ts": pb.ARTIFACT_FORMAT_TORCHSCRIPT,
}


def model_name(model: str) -> str:
    """``churn`` or ``models/churn`` -> ``models/churn``."""
    return model if model.startswith("models/") else f"models/{model}"


def artifact_format(requested: ArtifactFormatLike, source: Source | None = None) -> pb.ArtifactFormat:
    """The artifact format: as requested, else from the file's extension, else ONNX."""
    if requested is None or requested == "":
        if source is not None and source.suffix in _SUFFIXES:
            return _SUFFIXES[source.suffix]
        return pb.ARTIFACT_FORMAT_ONNX
    if isinstance(requested, str):
        key = requested.lower().removeprefix("artifact_format_")
        if key not in _FORMATS:
            raise ValueError(f"format {requested!r} is not one of {', '.join(_FORMATS)}")
        return _FORMATS[key]
    return requested


def _lineage(lineage: LineageLike) -> pb.Lineage | None:
    if lineage is None or isinstance(lineage, pb.Lineage):
        return lineage
    return pb.Lineage(**dict(lineage))


def version_message(
    *,
    description: str = "",
    artifact: pb.Artifact | None = None,
    signature: SignatureLike = None,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, str] | None = None,
    lineage: LineageLike = None,
    labels: Mapping[str, str] | None = None,
) -> pb.ModelVersion:
    return pb.ModelVersion(
        description=description,
        artifact=artifact,
        signature=signature,
        metrics=dict(metrics or {}),
        params={key: str(value) for key, value in (params or {}).items()},
        lineage=_lineage(lineage),
        labels=dict(labels or {}),
    )


def update_model_request(name: str, description: str | None, labels: Mapping[str, str] | None) -> pb.UpdateModelRequest:
    paths = [path for path, value in (("description", description), ("labels", labels)) if value is not None]
    if not paths:
        raise ValueError("update_model: give a description, labels or both")
    return pb.UpdateModelRequest(
        model=pb.Model(name=model_name(name), description=description or "", labels=dict(labels or {})),
        update_mask=field_mask_pb2.FieldMask(paths=paths),
    )


def update_version_request(
    name: str,
    description: str | None,
    labels: Mapping[str, str] | None,
    metrics: Mapping[str, float] | None,
) -> pb.UpdateModelVersionRequest:
    given = (("description", description), ("labels", labels), ("metrics", metrics))
    paths = [path for path, value in given if value is not None]
    if not paths:
        raise ValueError("update_model_version: give a description, labels, metrics or several")
    return pb.UpdateModelVersionRequest(
        model_version=pb.ModelVersion(
            name=name, description=description or "", labels=dict(labels or {}), metrics=dict(metrics or {})
        ),
        update_mask=field_mask_pb2.FieldMask(paths=paths),
    )


def set_alias_request(name: str, version: int, expected_version: int | None, reason: str) -> pb.SetAliasRequest:
    request = pb.SetAliasRequest(name=name, version=version, reason=reason)
    if expected_version is not None:
        request.expected_version = expected_version
    return request


def batch_set_request(
    changes: Mapping[str, int] | Iterable[pb.SetAliasRequest], reason: str
) -> pb.BatchSetAliasesRequest:
    if isinstance(changes, Mapping):
        requests = [pb.SetAliasRequest(name=name, version=version) for name, version in changes.items()]
    else:
        requests = list(changes)
    return pb.BatchSetAliasesRequest(requests=requests, reason=reason)
