"""The registry store interface: what the service needs from a database.

Methods are synchronous and each runs in one transaction; the service calls them
through :class:`~ferry_registry.store.database.DatabaseRunner`, off the event loop.
They raise the domain errors of ``ferry_common.errors`` (``NotFound``, ``Aborted``...)
with messages that name the resource.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from ferry_registry.domain import Alias, AliasChange, AliasEvent, Model, ModelVersion, NewModelVersion

__all__ = ["RegistryStore"]


class RegistryStore(Protocol):
    """Models, versions, aliases and the alias event log."""

    # Models.
    def create_model(self, model_id: str, description: str, labels: Mapping[str, str]) -> Model:
        """Create a model (AlreadyExists when the id is taken)."""

    def get_model(self, model_id: str) -> Model:
        """A model (NotFound)."""

    def list_models(self, labels: Mapping[str, str], after: str | None, limit: int) -> list[Model]:
        """Models with all of ``labels``, by id, after id ``after``."""

    def update_model(self, model_id: str, description: str | None, labels: Mapping[str, str] | None) -> Model:
        """Replace the fields that are not ``None``."""

    def delete_model(self, model_id: str, force: bool) -> list[str]:
        """Delete a model (and its versions with ``force``); returns artifact keys to delete.

        FailedPrecondition while it has versions (without ``force``) or aliases.
        """

    # Versions.
    def find_version_by_request(self, model_id: str, request_id: str) -> ModelVersion | None:
        """The version an earlier create with this ``request_id`` made, if any."""

    def reserve_version(self, model_id: str) -> int:
        """Hand out the next version number for an upload in flight (NotFound)."""

    def release_version(self, model_id: str, version: int) -> None:
        """Give back a reserved number if no later number was handed out."""

    def create_version(
        self,
        model_id: str,
        new: NewModelVersion,
        request_id: str | None,
        *,
        reserved: int | None = None,
        artifact_key: str | None = None,
    ) -> tuple[ModelVersion, bool]:
        """Register a version; returns it and whether it was created now.

        With a known ``request_id`` it returns the existing version and ``False``.
        ``reserved`` is a number from :meth:`reserve_version`.
        """

    def get_version(self, model_id: str, version: int | None) -> ModelVersion:
        """A version; ``None`` means the newest existing one (NotFound)."""

    def list_versions(
        self, model_id: str, labels: Mapping[str, str], before: int | None, limit: int
    ) -> list[ModelVersion]:
        """Versions newest first, below ``before``, with all of ``labels``."""

    def update_version(
        self,
        model_id: str,
        version: int,
        description: str | None,
        labels: Mapping[str, str] | None,
        metrics: Mapping[str, float] | None,
    ) -> ModelVersion:
        """Replace the fields that are not ``None``."""

    def delete_version(self, model_id: str, version: int) -> str | None:
        """Delete a version (FailedPrecondition while aliased); returns its artifact key."""

    # Aliases.
    def set_aliases(self, changes: Sequence[AliasChange], actor: str, *, batch: bool = False) -> list[Alias]:
        """Apply every change in one transaction, or none (compare-and-set: Aborted).

        A change to the version an alias already points at records no event. With
        ``batch``, error messages start with ``requests[i]:``.
        """

    def get_alias(self, model_id: str, alias_id: str) -> Alias:
        """An alias (NotFound)."""

    def resolve_alias(self, model_id: str, alias_id: str) -> ModelVersion:
        """The version an alias points at (NotFound)."""

    def list_aliases(self, model_id: str, after: str | None, limit: int) -> list[Alias]:
        """Aliases of a model by id, after id ``after``."""

    def delete_alias(
        self, model_id: str, alias_id: str, expected_version: int | None, reason: str, actor: str
    ) -> AliasEvent:
        """Delete an alias, recording a DELETE event."""

    def rollback_alias(self, model_id: str, alias_id: str, reason: str, actor: str) -> Alias:
        """Move an alias back to its previous target, recording a ROLLBACK event."""

    def list_events(self, model_id: str | None, alias_id: str | None, after: int, limit: int) -> list[AliasEvent]:
        """Events after revision ``after``, oldest first (every model when ``model_id`` is None)."""

    def current_revision(self) -> int:
        """The revision of the newest committed event (0 when none)."""
