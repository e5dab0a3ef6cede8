"""Serve's control-plane domain: deployments, their routes and the changes an update makes.

Plain frozen dataclasses that know nothing of grpc or SQL. Constructors check the
invariants (exactly one target, percents 0-100) with ``ValueError``: a request reaches
them only after :mod:`ferry_serve.messages` has checked its form, so a ``ValueError``
here is a bug, never a caller's mistake.

Two numbers describe a deployment's history:

- ``revision``: the global serve revision of its last *user* change (create, update).
  It increases on each change and is what a replica's change feed is ordered by.
- ``etag``: derived from the deployment id and ``revision``; it changes exactly when
  ``revision`` does. ``state`` and ``message`` are output only: setting them changes
  neither (a replica marking a deployment READY must not make a user's read-modify-write
  fail, nor wake every other replica's reconciler).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from dataclasses import dataclass, field

from ferry_common.errors import FailedPrecondition

__all__ = [
    "DEFAULT_ALIAS",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_QUEUE_DELAY_MICROSECONDS",
    "DEFAULT_SAMPLE_RATE",
    "KEEP",
    "BatchingSpec",
    "Deployment",
    "DeploymentChanges",
    "DeploymentState",
    "Keep",
    "Route",
    "ServedVersion",
    "Split",
    "Target",
]

DEFAULT_ALIAS = "production"
DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_MAX_QUEUE_DELAY_MICROSECONDS = 500
DEFAULT_SAMPLE_RATE = 1.0


class DeploymentState(enum.StrEnum):
    """Lifecycle of a deployment (the proto's ``Deployment.State`` without ``STATE_``)."""

    PENDING = "PENDING"
    READY = "READY"
    UPDATING = "UPDATING"
    FAILED = "FAILED"


class Route(enum.StrEnum):
    """Which part of a deployment's traffic a version serves (the proto's ``Route`` without ``ROUTE_``)."""

    PRIMARY = "PRIMARY"
    CANARY = "CANARY"
    SHADOW = "SHADOW"


@dataclass(frozen=True)
class Target:
    """A model version by alias (follows the alias when it moves) or by number: exactly one."""

    alias: str | None = None
    version: int | None = None

    def __post_init__(self) -> None:
        if (self.alias is None) == (self.version is None):
            raise ValueError(f"a target names exactly one of alias and version, not {self.alias!r}/{self.version!r}")
        if self.version is not None and self.version < 1:
            raise ValueError(f"version {self.version} must be at least 1")

    @classmethod
    def of_alias(cls, alias: str) -> Target:
        return cls(alias=alias)

    @classmethod
    def of_version(cls, version: int) -> Target:
        return cls(version=version)

    def __str__(self) -> str:
        return f"alias {self.alias}" if self.alias is not None else f"version {self.version}"


@dataclass(frozen=True)
class Split:
    """A share of traffic (0-100 percent) sent to another target than the primary."""

    target: Target
    percent: int

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise ValueError(f"percent {self.percent} is not in 0-100")


@dataclass(frozen=True)
class BatchingSpec:
    """Triton's dynamic batching for a deployment's versions (sizes are kept when disabled)."""

    enabled: bool = False
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_queue_delay_microseconds: int = DEFAULT_MAX_QUEUE_DELAY_MICROSECONDS


@dataclass(frozen=True)
class ServedVersion:
    """A version loaded for a deployment: what Triton holds, not what the user asked for."""

    version: int
    route: Route
    ready: bool


@dataclass(frozen=True)
class Deployment:
    """A model exposed for inference, as stored.

    A *draft* (what :func:`ferry_serve.messages.deployment_from_create` returns) has
    ``revision`` 0, an empty ``etag`` and no times: the store fills them.
    """

    deployment_id: str
    model_id: str
    primary: Target = field(default_factory=lambda: Target.of_alias(DEFAULT_ALIAS))
    canary: Split | None = None
    shadow: Split | None = None
    batching: BatchingSpec = field(default_factory=BatchingSpec)
    sample_rate: float = DEFAULT_SAMPLE_RATE
    state: DeploymentState = DeploymentState.PENDING
    message: str = ""
    etag: str = ""
    revision: int = 0
    create_time: datetime.datetime | None = None
    update_time: datetime.datetime | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ValueError(f"sample_rate {self.sample_rate} is not in [0, 1]")

    def same_spec(self, other: Deployment) -> bool:
        """Whether the user-settable fields are equal (what an update may change)."""
        return (self.model_id, self.primary, self.canary, self.shadow, self.batching, self.sample_rate) == (
            other.model_id,
            other.primary,
            other.canary,
            other.shadow,
            other.batching,
            other.sample_rate,
        )


class Keep(enum.Enum):
    """Marks a field an update leaves as it is (``None`` is a value: "no canary")."""

    KEEP = "KEEP"


KEEP = Keep.KEEP


@dataclass(frozen=True)
class DeploymentChanges:
    """What an update changes; :meth:`apply` resolves it against the deployment as stored.

    ``canary_percent`` / ``shadow_percent`` change only the share of an existing split
    (the update mask path ``canary.percent``): applied to the row locked by the store, so
    a concurrent change of the split's target is never undone by a stale copy.
    """

    primary: Target | Keep = KEEP
    canary: Split | Keep | None = KEEP
    shadow: Split | Keep | None = KEEP
    canary_percent: int | None = None
    shadow_percent: int | None = None
    batching: BatchingSpec | Keep = KEEP
    sample_rate: float | Keep = KEEP

    def apply(self, deployment: Deployment) -> Deployment:
        """``deployment`` with these changes (times, etag and revision untouched).

        Raises:
            FailedPrecondition: a percent change for a split the deployment does not
                have (names ``update_mask``).
        """
        canary = deployment.canary if isinstance(self.canary, Keep) else self.canary
        shadow = deployment.shadow if isinstance(self.shadow, Keep) else self.shadow
        if self.canary_percent is not None:
            if canary is None:
                raise _no_split(deployment, "canary")
            canary = Split(canary.target, self.canary_percent)
        if self.shadow_percent is not None:
            if shadow is None:
                raise _no_split(deployment, "shadow")
            shadow = Split(shadow.target, self.shadow_percent)
        return dataclasses.replace(
            deployment,
            primary=deployment.primary if isinstance(self.primary, Keep) else self.primary,
            canary=canary,
            shadow=shadow,
            batching=deployment.batching if isinstance(self.batching, Keep) else self.batching,
            sample_rate=deployment.sample_rate if isinstance(self.sample_rate, Keep) else self.sample_rate,
        )


def _no_split(deployment: Deployment, route: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"update_mask: {route}.percent: deployments/{deployment.deployment_id} has no {route} "
        f"(set {route} with its target instead)",
        field="update_mask",
    )
