"""The registry's domain objects: plain, immutable dataclasses that know nothing of grpc or SQL.

The servicer maps them to and from ``ferry.registry.v1`` messages; the store maps them to
and from ORM rows.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from ferry_common.errors import Aborted
from ferry_registry.resources import alias_name

__all__ = [
    "Alias",
    "AliasChange",
    "AliasEvent",
    "AliasEventKind",
    "Artifact",
    "ArtifactFormat",
    "Lineage",
    "Model",
    "ModelSignature",
    "ModelVersion",
    "NewModelVersion",
    "Page",
    "TensorSpec",
    "compare_and_set",
]

T = TypeVar("T")


class ArtifactFormat(enum.IntEnum):
    """File format of an artifact (values match the proto enum)."""

    UNSPECIFIED = 0
    ONNX = 1
    TORCHSCRIPT = 2

    @property
    def extension(self) -> str:
        """File extension used in the object-store key."""
        return {ArtifactFormat.ONNX: "onnx", ArtifactFormat.TORCHSCRIPT: "pt"}.get(self, "bin")


class AliasEventKind(enum.IntEnum):
    """What happened to an alias (values match the proto enum)."""

    SET = 1
    ROLLBACK = 2
    DELETE = 3


@dataclass(frozen=True)
class Model:
    """A named model: a sequence of versions and a set of aliases."""

    model_id: str
    description: str
    labels: Mapping[str, str]
    latest_version: int
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True)
class Artifact:
    """Where a version's bytes live and how to check them."""

    uri: str
    sha256: str
    size_bytes: int
    format: ArtifactFormat


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor (Triton datatype strings, -1 for any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelSignature:
    """Inputs and outputs of a model."""

    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()


@dataclass(frozen=True)
class Lineage:
    """Where a version came from."""

    dataset_version: str = ""
    split: str = ""
    training_job: str = ""
    code_revision: str = ""


@dataclass(frozen=True)
class NewModelVersion:
    """What a caller gives to register a version (the registry assigns the number)."""

    artifact: Artifact
    description: str = ""
    signature: ModelSignature = field(default_factory=ModelSignature)
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    lineage: Lineage = field(default_factory=Lineage)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelVersion:
    """An immutable, numbered version of a model.

    Attributes:
        artifact_key: the object-store key when the registry holds the bytes itself
            (uploaded through ``UploadModelVersion``); ``None`` for an artifact registered
            by URI. Only objects with a key are deleted with their version.
        aliases: ids of the aliases that point at this version, sorted.
    """

    model_id: str
    version: int
    description: str
    artifact: Artifact
    signature: ModelSignature
    metrics: Mapping[str, float]
    params: Mapping[str, str]
    lineage: Lineage
    labels: Mapping[str, str]
    aliases: tuple[str, ...]
    create_time: datetime
    update_time: datetime
    artifact_key: str | None = None


@dataclass(frozen=True)
class Alias:
    """A movable pointer at a model version."""

    model_id: str
    alias_id: str
    version: int
    revision: int
    update_time: datetime


@dataclass(frozen=True)
class AliasEvent:
    """One entry of the append-only alias audit log."""

    model_id: str
    alias_id: str
    from_version: int
    to_version: int
    kind: AliasEventKind
    revision: int
    actor: str
    reason: str
    create_time: datetime


@dataclass(frozen=True)
class AliasChange:
    """One SetAlias: point ``alias_id`` of ``model_id`` at ``version``.

    ``expected_version``: ``None`` = unconditional, ``0`` = the alias must not exist,
    ``N`` = the alias must point at ``N``.
    """

    model_id: str
    alias_id: str
    version: int
    expected_version: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a List: the items and the token of the next page (empty at the end)."""

    items: list[T]
    next_page_token: str = ""


def compare_and_set(model_id: str, alias_id: str, current: int | None, expected: int | None) -> None:
    """The compare-and-set rule of aliases (SetAlias, BatchSetAliases, DeleteAlias).

    ``current`` is the alias's version (``None`` when it does not exist), read under the
    model's lock in the same transaction that writes; ``expected`` is the caller's
    ``expected_version``: unset (``None``) skips the check, ``0`` means "the alias must
    not exist", ``n`` means "the alias must point at version n". A mismatch is ABORTED
    naming the current version, so the caller can re-read and retry.
    """
    if expected is None:
        return
    name = alias_name(model_id, alias_id)
    if expected == 0 and current is not None:
        raise Aborted(
            f"alias {name!r} already exists and points at version {current} "
            "(expected_version 0: the alias must not exist)",
            field="expected_version",
        )
    if expected > 0 and current is None:
        raise Aborted(f"alias {name!r} does not exist (expected_version {expected})", field="expected_version")
    if expected > 0 and current is not None and current != expected:
        raise Aborted(
            f"alias {name!r} points at version {current}, not expected_version {expected}",
            field="expected_version",
        )
