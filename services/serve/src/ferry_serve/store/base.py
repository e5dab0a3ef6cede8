"""The serve store interface and the change feed it hands out.

Methods are synchronous and each runs in one transaction; the service calls them through
:class:`~ferry_common.database.DatabaseRunner` (a lost database becomes UNAVAILABLE).
They raise the domain errors of ``ferry_common.errors`` with messages that name the
request field.

Rules:

- ``revision`` is global to the database: every create, update and delete takes the
  next one, in commit order. A deployment carries the revision of its last user change.
- ``etag`` changes exactly when the deployment's ``revision`` does. An update that
  changes nothing keeps both (and ``update_time``). :meth:`ServeStore.set_state` changes
  neither: state is output only.
- An empty ``expected_etag`` means no check.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from ferry_serve.domain import Deployment, DeploymentChanges, DeploymentState

__all__ = ["Changes", "ServeStore"]


class Changes(NamedTuple):
    """What changed after a revision: unpacks as ``(deployments, deleted_ids, revision)``.

    Attributes:
        deployments: deployments created or updated after the revision asked for, as they
            are now, in revision order.
        deleted_ids: ids deleted after that revision and not re-created since, sorted.
        revision: the newest revision covered; pass it to the next call.
    """

    deployments: list[Deployment]
    deleted_ids: list[str]
    revision: int


class ServeStore(Protocol):
    """Deployments and the feed of their changes."""

    def create(self, draft: Deployment) -> Deployment:
        """Store a new deployment (PENDING, a new revision and etag); AlreadyExists naming ``deployment_id``."""

    def get(self, deployment_id: str) -> Deployment:
        """A deployment (NotFound naming ``name``)."""

    def list_deployments(self, after: str | None, limit: int) -> list[Deployment]:
        """Up to ``limit`` deployments ordered by id, after the id ``after``."""

    def list_page(self, page_size: int, page_token: str) -> tuple[list[Deployment], str]:
        """One page of deployments ordered by id and the next page's token ("" at the end)."""

    def update(self, deployment_id: str, changes: DeploymentChanges, expected_etag: str = "") -> Deployment:
        """Apply ``changes``; Aborted naming ``deployment.etag`` when ``expected_etag`` is stale."""

    def set_state(
        self, deployment_id: str, state: DeploymentState, message: str = "", *, revision: int | None = None
    ) -> Deployment:
        """Record what the data plane reached, for the revision it applied (Aborted when stale)."""

    def delete(self, deployment_id: str) -> None:
        """Delete a deployment, leaving a tombstone in the feed (NotFound naming ``name``)."""

    def changes_since(self, revision: int) -> Changes:
        """Creates, updates and deletes after ``revision`` (0, or one above the newest: everything)."""

    def current_revision(self) -> int:
        """The newest revision committed."""

    def alias_revision(self) -> int:
        """The last registry alias event any replica acted on (0 before the first)."""

    def record_alias_revision(self, revision: int) -> None:
        """Raise the stored alias revision to ``revision`` (never lowers it)."""
