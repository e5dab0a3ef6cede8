"""Proto <-> domain for ``ferry.serve.v1``: form checks of deployments, and deployments as messages.

Each check raises :class:`~ferry_common.errors.InvalidArgument` naming the request field
(``deployment.canary.percent``) and echoing values only through
:func:`ferry_common.names.shorten`. Checks against other services (does the model, the
alias, the version exist?) belong to the service.

Rules proto3 forces on us (a scalar cannot tell "unset" from zero):

- ``sample_rate``: at create, 0 means "unset", so the default 1.0 (every request
  sampled). To stop sampling, update with ``update_mask: ["sample_rate"]`` and 0: a path
  named in the mask takes the value as sent, 0 included. With an empty mask, 0 leaves
  the rate as it is.
- ``batching.max_batch_size`` 0 means the default 32 (0 is no batch size);
  ``batching.max_queue_delay_microseconds`` 0 means the default 500 (the shortest wait
  one can ask for is 1 µs). Both are checked even when batching is disabled: a value out
  of range is a mistake whatever the switch says.
- ``canary.percent`` / ``shadow.percent`` 0 is 0: a split that takes no traffic yet
  (its version stays loaded and warm), what a rollback on an SLO breach sets.

Update masks (AIP-134): paths ``primary``, ``canary``, ``shadow``, ``batching``,
``sample_rate``, and ``canary.percent`` / ``shadow.percent`` (only the share of the
existing split). A path named with its field absent resets it to its default: ``canary``
or ``shadow`` absent removes the split, ``primary`` absent is alias ``production``,
``batching`` absent is batching off with default sizes. An empty mask means every
updatable field present in the message (a message field set, ``sample_rate`` non-zero);
removing a split or setting ``sample_rate`` to 0 therefore needs an explicit mask.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable

from google.protobuf import timestamp_pb2

from ferry.serve.v1 import serve_pb2 as pb
from ferry_common.errors import InvalidArgument
from ferry_common.names import parse_name, shorten, validate_id
from ferry_serve.domain import (
    DEFAULT_ALIAS,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_DELAY_MICROSECONDS,
    DEFAULT_SAMPLE_RATE,
    KEEP,
    BatchingSpec,
    Deployment,
    DeploymentChanges,
    Route,
    ServedVersion,
    Split,
    Target,
)

__all__ = [
    "MAX_BATCH_SIZE",
    "MAX_QUEUE_DELAY_MICROSECONDS",
    "UPDATE_PATHS",
    "apply_update",
    "deployment_from_create",
    "deployment_name",
    "deployment_ref",
    "deployment_to_proto",
    "route_from_proto",
    "served_version_to_proto",
]

MAX_BATCH_SIZE = 1024
MAX_QUEUE_DELAY_MICROSECONDS = 10_000_000
UPDATE_PATHS = ("primary", "canary", "shadow", "batching", "sample_rate", "canary.percent", "shadow.percent")
# Updatable fields an empty mask may pick up, in the order they are checked.
_WHOLE_FIELDS = ("primary", "canary", "shadow", "batching")
_PREFIX = "deployment"


def deployment_name(deployment_id: str) -> str:
    """``deployments/{deployment}``."""
    return f"deployments/{deployment_id}"


def deployment_ref(field: str, name: str) -> str:
    """``deployments/{deployment}`` -> the id (INVALID_ARGUMENT naming ``field``)."""
    return parse_name(field, name, "deployments/{deployment}")["deployment"]


# ---------------------------------------------------------------- proto -> domain


def _target(field: str, message: pb.TrafficTarget) -> Target:
    which = message.WhichOneof("target")
    if which is None:
        raise InvalidArgument(f"{field}: set alias (such as {DEFAULT_ALIAS!r}) or version", field=field)
    if which == "alias":
        alias_field = f"{field}.alias"
        if not message.alias:
            raise InvalidArgument(f"{alias_field}: must not be empty", field=alias_field)
        return Target(alias=validate_id(alias_field, message.alias))
    version_field = f"{field}.version"
    if message.version < 1:
        raise InvalidArgument(f"{version_field}: {message.version} must be at least 1", field=version_field)
    return Target(version=message.version)


def _percent(field: str, value: int) -> int:
    if not 0 <= value <= 100:
        raise InvalidArgument(f"{field}: {value} is not a percent in 0-100", field=field)
    return value


def _split(field: str, message: pb.TrafficSplit) -> Split:
    if not message.HasField("target"):
        target_field = f"{field}.target"
        raise InvalidArgument(f"{target_field}: required (an alias or a version)", field=target_field)
    return Split(_target(f"{field}.target", message.target), _percent(f"{field}.percent", message.percent))


def _batching(field: str, message: pb.Batching) -> BatchingSpec:
    size_field = f"{field}.max_batch_size"
    size = message.max_batch_size or DEFAULT_MAX_BATCH_SIZE
    if not 1 <= size <= MAX_BATCH_SIZE:
        raise InvalidArgument(
            f"{size_field}: {message.max_batch_size} is not in 1-{MAX_BATCH_SIZE} (0: the default "
            f"{DEFAULT_MAX_BATCH_SIZE})",
            field=size_field,
        )
    delay_field = f"{field}.max_queue_delay_microseconds"
    delay = message.max_queue_delay_microseconds or DEFAULT_MAX_QUEUE_DELAY_MICROSECONDS
    if not 1 <= delay <= MAX_QUEUE_DELAY_MICROSECONDS:
        raise InvalidArgument(
            f"{delay_field}: {message.max_queue_delay_microseconds} is not in 1-{MAX_QUEUE_DELAY_MICROSECONDS} "
            f"(10 s; 0: the default {DEFAULT_MAX_QUEUE_DELAY_MICROSECONDS})",
            field=delay_field,
        )
    return BatchingSpec(enabled=message.enabled, max_batch_size=size, max_queue_delay_microseconds=delay)


def _sample_rate(field: str, value: float) -> float:
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise InvalidArgument(f"{field}: {shorten(value)} is not a fraction in [0, 1]", field=field)
    return value


def _primary(message: pb.Deployment) -> Target:
    if not message.HasField("primary"):
        return Target(alias=DEFAULT_ALIAS)
    return _target(f"{_PREFIX}.primary", message.primary)


def _optional_split(message: pb.Deployment, route: str) -> Split | None:
    if not message.HasField(route):
        return None
    split: pb.TrafficSplit = getattr(message, route)
    return _split(f"{_PREFIX}.{route}", split)


def _batching_of(message: pb.Deployment) -> BatchingSpec:
    if not message.HasField("batching"):
        return BatchingSpec()
    return _batching(f"{_PREFIX}.batching", message.batching)


def deployment_from_create(request: pb.CreateDeploymentRequest) -> Deployment:
    """Check a CreateDeploymentRequest's form and map it to a draft :class:`Deployment`.

    ``deployment_id`` defaults to the model id. Output-only fields (``name``, ``state``,
    ``message``, ``served_versions``, ``etag``, times) are ignored. The draft is PENDING,
    revision 0, no etag: the store fills them.
    """
    message = request.deployment
    model_id = parse_name(f"{_PREFIX}.model", message.model, "models/{model}")["model"]
    deployment_id = validate_id("deployment_id", request.deployment_id or model_id)
    rate = message.sample_rate
    return Deployment(
        deployment_id=deployment_id,
        model_id=model_id,
        primary=_primary(message),
        canary=_optional_split(message, "canary"),
        shadow=_optional_split(message, "shadow"),
        batching=_batching_of(message),
        sample_rate=_sample_rate(f"{_PREFIX}.sample_rate", rate) if rate != 0 else DEFAULT_SAMPLE_RATE,
    )


def _mask_paths(request: pb.UpdateDeploymentRequest) -> list[str]:
    message = request.deployment
    paths = list(request.update_mask.paths)
    for path in paths:
        if path in UPDATE_PATHS:
            continue
        if path == "model":
            raise InvalidArgument(
                "update_mask: 'model' cannot change (create another deployment for another model)", field="update_mask"
            )
        raise InvalidArgument(
            f"update_mask: {shorten(path)} is not an updatable field (one of {', '.join(UPDATE_PATHS)})",
            field="update_mask",
        )
    if paths:
        return paths
    implied = [path for path in _WHOLE_FIELDS if message.HasField(path)]
    if message.sample_rate != 0:
        implied.append("sample_rate")
    if not implied:
        raise InvalidArgument(
            "update_mask: empty, and the deployment sets no updatable field: nothing to change (to remove a "
            "canary or shadow, or to set sample_rate to 0, name the field in update_mask)",
            field="update_mask",
        )
    return implied


def apply_update(current: Deployment, request: pb.UpdateDeploymentRequest) -> DeploymentChanges:
    """Check an UpdateDeploymentRequest's form and turn its mask into :class:`DeploymentChanges`.

    ``current`` is the deployment the request names (read by the caller): the changes are
    tried on it so that a mistake such as ``canary.percent`` without a canary is reported
    before any write. The store applies them again to the row it locks. The request's
    ``deployment.etag`` is the caller's to pass to the store.

    Raises:
        InvalidArgument: a malformed field or an unknown mask path (naming ``update_mask``).
        FailedPrecondition: a percent change for a split ``current`` does not have.
    """
    message = request.deployment
    deployment_id = deployment_ref(f"{_PREFIX}.name", message.name)
    if deployment_id != current.deployment_id:
        raise ValueError(f"the request names deployments/{deployment_id}, not deployments/{current.deployment_id}")
    paths = set(_mask_paths(request))
    changes = DeploymentChanges(
        primary=_primary(message) if "primary" in paths else KEEP,
        canary=_optional_split(message, "canary") if "canary" in paths else KEEP,
        shadow=_optional_split(message, "shadow") if "shadow" in paths else KEEP,
        canary_percent=_sub_percent(message, "canary", paths),
        shadow_percent=_sub_percent(message, "shadow", paths),
        batching=_batching_of(message) if "batching" in paths else KEEP,
        sample_rate=(_sample_rate(f"{_PREFIX}.sample_rate", message.sample_rate) if "sample_rate" in paths else KEEP),
    )
    changes.apply(current)
    return changes


def _sub_percent(message: pb.Deployment, route: str, paths: set[str]) -> int | None:
    # The whole split, when also named, already carries its percent.
    if f"{route}.percent" not in paths or route in paths:
        return None
    split: pb.TrafficSplit = getattr(message, route)
    return _percent(f"{_PREFIX}.{route}.percent", split.percent)


# ---------------------------------------------------------------- domain -> proto


def _timestamp(value: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _target_to_proto(target: Target) -> pb.TrafficTarget:
    if target.alias is not None:
        return pb.TrafficTarget(alias=target.alias)
    return pb.TrafficTarget(version=target.version)


def _split_to_proto(split: Split | None) -> pb.TrafficSplit | None:
    if split is None:
        return None
    return pb.TrafficSplit(target=_target_to_proto(split.target), percent=split.percent)


def served_version_to_proto(served: ServedVersion) -> pb.ServedVersion:
    return pb.ServedVersion(version=served.version, route=f"ROUTE_{served.route}", ready=served.ready)


def deployment_to_proto(deployment: Deployment, served_versions: Iterable[ServedVersion] = ()) -> pb.Deployment:
    """The message of a stored deployment, with the versions the data plane reports loaded."""
    return pb.Deployment(
        name=deployment_name(deployment.deployment_id),
        model=f"models/{deployment.model_id}",
        primary=_target_to_proto(deployment.primary),
        canary=_split_to_proto(deployment.canary),
        shadow=_split_to_proto(deployment.shadow),
        batching=pb.Batching(
            enabled=deployment.batching.enabled,
            max_batch_size=deployment.batching.max_batch_size,
            max_queue_delay_microseconds=deployment.batching.max_queue_delay_microseconds,
        ),
        sample_rate=deployment.sample_rate,
        state=f"STATE_{deployment.state}",
        message=deployment.message,
        served_versions=[served_version_to_proto(served) for served in served_versions],
        etag=deployment.etag,
        create_time=_timestamp(deployment.create_time),
        update_time=_timestamp(deployment.update_time),
    )


def route_from_proto(value: int) -> Route:
    """A proto ``Route`` (not UNSPECIFIED) as the domain's :class:`Route`."""
    return Route(pb.Route.Name(value).removeprefix("ROUTE_"))
