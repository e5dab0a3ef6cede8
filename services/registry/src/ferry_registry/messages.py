"""Request validation and proto <-> domain mapping for the servicer.

Every check here is about form (a field's shape), never about state; messages name the
field and the bad value, and are raised as ``InvalidArgument`` before anything is written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from ferry.registry.v1 import registry_pb2 as pb
from ferry_common.errors import InvalidArgument
from ferry_common.fields import labels, request_id, text
from ferry_common.names import (
    parse_label_filter,
    parse_name,
    parse_version_name,
    parse_version_number,
    shorten,
    validate_id,
)
from ferry_registry.domain import (
    Alias,
    AliasEvent,
    Artifact,
    ArtifactFormat,
    Lineage,
    Model,
    ModelSignature,
    ModelVersion,
    NewModelVersion,
    TensorSpec,
)
from ferry_registry.resources import alias_name, model_name, version_name

__all__ = [
    "alias_event_to_proto",
    "alias_ref",
    "alias_to_proto",
    "label_filter",
    "labels",
    "model_ref",
    "model_to_proto",
    "new_model_version",
    "reason",
    "request_id",
    "text",
    "update_fields",
    "version_ref",
    "version_ref_or_latest",
    "version_to_proto",
]

# Triton's datatype strings.
DATATYPES = frozenset(
    {
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
        "BF16",
        "BYTES",
    }
)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_URI = re.compile(r"[a-z][a-z0-9+.-]*://\S+")
MAX_ENTRIES = 1000
MAX_REASON = 2000


# ------------------------------------------------------------------ references


def model_ref(field: str, name: str) -> str:
    """The model id of ``models/{model}``."""
    return parse_name(field, name, "models/{model}")["model"]


def version_number(field: str, text_value: str) -> int:
    """A version segment: a positive number of ASCII digits."""
    return parse_version_number(field, text_value)


def version_ref(field: str, name: str) -> tuple[str, int]:
    """``models/{model}/versions/{version}`` -> (model id, version number)."""
    model_id, number = parse_version_name(field, name, "models", latest=False)
    assert number is not None
    return model_id, number


def version_ref_or_latest(field: str, name: str) -> tuple[str, int | None]:
    """Like :func:`version_ref`, but ``latest`` gives ``None`` (the newest version)."""
    return parse_version_name(field, name, "models")


def alias_ref(field: str, name: str) -> tuple[str, str]:
    """``models/{model}/aliases/{alias}`` -> (model id, alias id)."""
    parts = parse_name(field, name, "models/{model}/aliases/{alias}")
    return parts["model"], parts["alias"]


def positive(field: str, value: int) -> int:
    if value <= 0:
        raise InvalidArgument(f"{field}: {value} must be a version number of 1 or more", field=field)
    return value


# ---------------------------------------------------------------------- fields


def reason(field: str, value: str) -> str:
    return text(field, value, MAX_REASON)


def label_filter(value: str) -> dict[str, str]:
    return parse_label_filter(value)


def update_fields(mask: FieldMask, allowed: Iterable[str]) -> set[str]:
    """The fields an update touches: the mask's paths, or every allowed field when empty."""
    allowed_set = set(allowed)
    paths = set(mask.paths)
    unknown = sorted(paths - allowed_set)
    if unknown:
        raise InvalidArgument(
            f"update_mask: unknown path {shorten(unknown[0])} (allowed: {', '.join(sorted(allowed_set))})",
            field="update_mask",
        )
    return paths or allowed_set


def metrics(field: str, values: Mapping[str, float]) -> dict[str, float]:
    if len(values) > MAX_ENTRIES:
        raise InvalidArgument(f"{field}: {len(values)} entries, at most {MAX_ENTRIES}", field=field)
    for key, value in values.items():
        if not key or len(key) > 128:
            raise InvalidArgument(f"{field}: key {key[:40]!r} must be 1-128 characters", field=field)
        if not math.isfinite(value):
            raise InvalidArgument(f"{field}[{key!r}]: {value} is not a finite number", field=field)
    return dict(values)


def params(field: str, values: Mapping[str, str]) -> dict[str, str]:
    if len(values) > MAX_ENTRIES:
        raise InvalidArgument(f"{field}: {len(values)} entries, at most {MAX_ENTRIES}", field=field)
    for key, value in values.items():
        if not key or len(key) > 128:
            raise InvalidArgument(f"{field}: key {key[:40]!r} must be 1-128 characters", field=field)
        text(f"{field}[{key!r}]", value)
    return dict(values)


def _artifact_format(field: str, value: int) -> ArtifactFormat:
    if value not in (ArtifactFormat.ONNX, ArtifactFormat.TORCHSCRIPT):
        raise InvalidArgument(
            f"{field}: {pb.ArtifactFormat.Name(value) if value in pb.ArtifactFormat.values() else value} "
            "is not ARTIFACT_FORMAT_ONNX or ARTIFACT_FORMAT_TORCHSCRIPT",
            field=field,
        )
    return ArtifactFormat(value)


def _sha256(field: str, value: str) -> str:
    lowered = value.lower()
    if not _SHA256.fullmatch(lowered):
        raise InvalidArgument(f"{field}: {value[:80]!r} is not a hex sha256 (64 characters)", field=field)
    return lowered


def _artifact(field: str, message: pb.Artifact, *, upload: bool) -> Artifact:
    fmt = _artifact_format(f"{field}.format", message.format)
    if message.size_bytes < 0:
        raise InvalidArgument(f"{field}.size_bytes: {message.size_bytes} is negative", field=f"{field}.size_bytes")
    if upload:
        # uri is computed by the registry; sha256 and size, when given, are checked.
        sha = _sha256(f"{field}.sha256", message.sha256) if message.sha256 else ""
        return Artifact(uri="", sha256=sha, size_bytes=message.size_bytes, format=fmt)
    if not _URI.fullmatch(message.uri):
        raise InvalidArgument(
            f"{field}.uri: {message.uri[:200]!r} is not an object URI such as s3://bucket/key or file:///path",
            field=f"{field}.uri",
        )
    text(f"{field}.uri", message.uri, 2048)
    return Artifact(
        uri=message.uri, sha256=_sha256(f"{field}.sha256", message.sha256), size_bytes=message.size_bytes, format=fmt
    )


def _tensors(field: str, specs: Iterable[pb.TensorSpec]) -> tuple[TensorSpec, ...]:
    result: list[TensorSpec] = []
    names: set[str] = set()
    for index, spec in enumerate(specs):
        where = f"{field}[{index}]"
        if not spec.name or len(spec.name) > 256:
            raise InvalidArgument(f"{where}.name: {spec.name[:40]!r} must be 1-256 characters", field=f"{where}.name")
        if spec.name in names:
            raise InvalidArgument(f"{where}.name: {spec.name!r} appears twice", field=f"{where}.name")
        names.add(spec.name)
        if spec.datatype not in DATATYPES:
            raise InvalidArgument(
                f"{where}.datatype: {spec.datatype!r} is not a Triton datatype ({', '.join(sorted(DATATYPES))})",
                field=f"{where}.datatype",
            )
        for dim in spec.shape:
            if dim == 0 or dim < -1:
                raise InvalidArgument(
                    f"{where}.shape: dimension {dim} must be positive or -1 (any size)", field=f"{where}.shape"
                )
        result.append(TensorSpec(spec.name, spec.datatype, tuple(spec.shape)))
    return tuple(result)


def _lineage(field: str, message: pb.Lineage) -> Lineage:
    if message.dataset_version:
        parts = parse_name(f"{field}.dataset_version", message.dataset_version, "datasets/{dataset}/versions/{version}")
        version_number(f"{field}.dataset_version", parts["version"])
    if message.training_job:
        parse_name(f"{field}.training_job", message.training_job, "trainingJobs/{training_job}")
    text(f"{field}.split", message.split, 63)
    text(f"{field}.code_revision", message.code_revision, 256)
    return Lineage(
        dataset_version=message.dataset_version,
        split=message.split,
        training_job=message.training_job,
        code_revision=message.code_revision,
    )


def new_model_version(field: str, message: pb.ModelVersion, *, upload: bool = False) -> NewModelVersion:
    """Validate what a caller gives to register a version."""
    return NewModelVersion(
        artifact=_artifact(f"{field}.artifact", message.artifact, upload=upload),
        description=text(f"{field}.description", message.description),
        signature=ModelSignature(
            inputs=_tensors(f"{field}.signature.inputs", message.signature.inputs),
            outputs=_tensors(f"{field}.signature.outputs", message.signature.outputs),
        ),
        metrics=metrics(f"{field}.metrics", message.metrics),
        params=params(f"{field}.params", message.params),
        lineage=_lineage(f"{field}.lineage", message.lineage),
        labels=labels(f"{field}.labels", message.labels),
    )


def id_or_empty(field: str, value: str) -> str | None:
    return validate_id(field, value) if value else None


# --------------------------------------------------------------------- to proto


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def model_to_proto(model: Model) -> pb.Model:
    return pb.Model(
        name=model_name(model.model_id),
        description=model.description,
        labels=dict(model.labels),
        latest_version=model.latest_version,
        create_time=_timestamp(model.create_time),
        update_time=_timestamp(model.update_time),
    )


def _specs(specs: Iterable[TensorSpec]) -> list[pb.TensorSpec]:
    return [pb.TensorSpec(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in specs]


def version_to_proto(version: ModelVersion) -> pb.ModelVersion:
    return pb.ModelVersion(
        name=version_name(version.model_id, version.version),
        version=version.version,
        description=version.description,
        artifact=pb.Artifact(
            uri=version.artifact.uri,
            sha256=version.artifact.sha256,
            size_bytes=version.artifact.size_bytes,
            format=int(version.artifact.format),  # type: ignore[arg-type]
        ),
        signature=pb.ModelSignature(inputs=_specs(version.signature.inputs), outputs=_specs(version.signature.outputs)),
        metrics=dict(version.metrics),
        params=dict(version.params),
        lineage=pb.Lineage(
            dataset_version=version.lineage.dataset_version,
            split=version.lineage.split,
            training_job=version.lineage.training_job,
            code_revision=version.lineage.code_revision,
        ),
        labels=dict(version.labels),
        aliases=list(version.aliases),
        create_time=_timestamp(version.create_time),
        update_time=_timestamp(version.update_time),
    )


def alias_to_proto(alias: Alias) -> pb.Alias:
    return pb.Alias(
        name=alias_name(alias.model_id, alias.alias_id),
        version=alias.version,
        model_version=version_name(alias.model_id, alias.version),
        revision=alias.revision,
        update_time=_timestamp(alias.update_time),
    )


def alias_event_to_proto(event: AliasEvent) -> pb.AliasEvent:
    return pb.AliasEvent(
        alias=alias_name(event.model_id, event.alias_id),
        from_version=event.from_version,
        to_version=event.to_version,
        kind=int(event.kind),  # type: ignore[arg-type]
        revision=event.revision,
        actor=event.actor,
        reason=event.reason,
        create_time=_timestamp(event.create_time),
    )
