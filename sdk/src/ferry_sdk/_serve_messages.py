"""Requests of ``ferry.serve.v1`` from Pythonic arguments (both client flavours).

Targets, splits and batching come as plain values and become messages here:

- a target is an alias (``"production"``), a version number (``3``) or a ``TrafficTarget``;
- a split is ``(target, percent)`` or a ``TrafficSplit``;
- batching is ``True`` / ``False`` (on or off, default sizes), a mapping of the ``Batching``
  fields (``{"enabled": True, "max_batch_size": 64}``) or a ``Batching``.

Updates name what changes in a field mask built from the arguments given: an argument left
out is :data:`UNSET`; ``canary=None`` or ``shadow=None`` given explicitly removes the split,
``batching=None`` turns batching off, ``sample_rate=0.0`` stops sampling.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from typing import Final, TypeAlias

from google.protobuf import field_mask_pb2

from ferry.serve.v1 import serve_pb2 as pb
from ferry_sdk import errors
from ferry_sdk._registry_messages import model_name

__all__ = [
    "DEFAULT_ALIAS",
    "POLL_FIRST",
    "POLL_MAX",
    "UNSET",
    "BatchingLike",
    "SplitLike",
    "TargetLike",
    "Unset",
    "create_request",
    "deployment_id",
    "deployment_name",
    "failed_error",
    "remaining_until",
    "state_name",
    "update_request",
]

DEFAULT_ALIAS = "production"
# wait_ready polls: first after 0.1 s, then backing off to 1 s.
POLL_FIRST, POLL_MAX = 0.1, 1.0

TargetLike: TypeAlias = "str | int | pb.TrafficTarget"
"""An alias (``"production"``), a version number (``3``) or a ``TrafficTarget``."""
SplitLike: TypeAlias = "tuple[str | int | pb.TrafficTarget, int] | pb.TrafficSplit"
"""``(target, percent)`` (percent 0-100) or a ``TrafficSplit``."""
BatchingLike: TypeAlias = "bool | Mapping[str, bool | int] | pb.Batching"
"""``True``/``False``, a mapping of the ``Batching`` fields, or a ``Batching``."""


class Unset(enum.Enum):
    """The type of :data:`UNSET`."""

    UNSET = enum.auto()


UNSET: Final = Unset.UNSET
"""An update argument that was not given (its field keeps its value)."""


def deployment_name(name: str) -> str:
    """``iris`` or ``deployments/iris`` -> ``deployments/iris``."""
    return name if name.startswith("deployments/") else f"deployments/{name}"


def deployment_id(name: str) -> str:
    """``iris`` or ``deployments/iris`` -> ``iris`` (the data plane's ``model_name``)."""
    return name.removeprefix("deployments/")


def state_name(state: int) -> str:
    """``STATE_READY`` -> ``READY``."""
    return pb.Deployment.State.Name(state).removeprefix("STATE_")


def traffic_target(target: TargetLike) -> pb.TrafficTarget:
    """An alias, a version number or a ``TrafficTarget`` as a ``TrafficTarget``."""
    if isinstance(target, pb.TrafficTarget):
        return target
    if isinstance(target, bool):  # a bool is an int: refuse it rather than route to version 1
        raise TypeError(f"a traffic target is an alias (str) or a version (int), not {target!r}")
    if isinstance(target, str):
        return pb.TrafficTarget(alias=target)
    if isinstance(target, int):
        return pb.TrafficTarget(version=target)
    raise TypeError(f"a traffic target is an alias (str) or a version (int), not {type(target).__name__}")


def traffic_split(split: SplitLike) -> pb.TrafficSplit:
    """``(target, percent)`` or a ``TrafficSplit`` as a ``TrafficSplit``."""
    if isinstance(split, pb.TrafficSplit):
        return split
    if not isinstance(split, tuple) or len(split) != 2:
        raise TypeError(f"a split is (target, percent), such as ('staging', 10) or (3, 10); not {split!r}")
    target, percent = split
    if isinstance(percent, bool) or not isinstance(percent, int):
        raise TypeError(f"a split's percent is an int in 0-100, not {percent!r}")
    return pb.TrafficSplit(target=traffic_target(target), percent=percent)


def batching_message(batching: BatchingLike) -> pb.Batching:
    """``True``/``False``, a mapping or a ``Batching`` as a ``Batching`` (0 sizes: serve's defaults)."""
    if isinstance(batching, pb.Batching):
        return batching
    if isinstance(batching, bool):
        return pb.Batching(enabled=batching)
    if isinstance(batching, Mapping):
        fields = dict(batching)
        fields.setdefault("enabled", True)
        unknown = set(fields) - {"enabled", "max_batch_size", "max_queue_delay_microseconds"}
        if unknown:
            raise TypeError(
                f"batching: unknown key(s) {', '.join(sorted(unknown))} "
                "(enabled, max_batch_size, max_queue_delay_microseconds)"
            )
        return pb.Batching(
            enabled=bool(fields["enabled"]),
            max_batch_size=int(fields.get("max_batch_size", 0)),
            max_queue_delay_microseconds=int(fields.get("max_queue_delay_microseconds", 0)),
        )
    raise TypeError(f"batching is a bool, a mapping or a Batching, not {type(batching).__name__}")


def create_request(
    deployment_id: str,
    deployment: pb.Deployment | None,
    *,
    model: str,
    primary_alias: str,
    primary_version: int | None,
    canary: SplitLike | None,
    shadow: SplitLike | None,
    batching: BatchingLike | None,
    sample_rate: float,
) -> pb.CreateDeploymentRequest:
    """A ``CreateDeploymentRequest``: from ``deployment`` as given, else from the keyword arguments."""
    if deployment is not None:
        if model:
            raise ValueError("pass either deployment or the deployment's fields (model, ...), not both")
        return pb.CreateDeploymentRequest(deployment_id=deployment_id, deployment=deployment)
    if not model:
        raise ValueError("create_deployment: model is required (such as 'iris' or 'models/iris')")
    if primary_version is not None and primary_alias != DEFAULT_ALIAS:
        raise ValueError("give primary_alias or primary_version, not both")
    if sample_rate == 0:
        # The contract reads 0 at create as "unset" (then every request is sampled).
        raise ValueError(
            "sample_rate=0 at create means the default (1.0) in the contract: create the deployment, "
            "then update_deployment(name, sample_rate=0.0)"
        )
    primary = traffic_target(primary_version if primary_version is not None else primary_alias)
    message = pb.Deployment(
        model=model_name(model),
        primary=primary,
        canary=traffic_split(canary) if canary is not None else None,
        shadow=traffic_split(shadow) if shadow is not None else None,
        batching=batching_message(batching) if batching is not None else None,
        sample_rate=sample_rate,
    )
    return pb.CreateDeploymentRequest(deployment_id=deployment_id, deployment=message)


def update_request(
    name: str,
    *,
    primary: TargetLike | Unset,
    canary: SplitLike | Unset | None,
    shadow: SplitLike | Unset | None,
    batching: BatchingLike | Unset | None,
    sample_rate: float | Unset,
    etag: str,
    canary_percent: int | Unset = UNSET,
    shadow_percent: int | Unset = UNSET,
) -> pb.UpdateDeploymentRequest:
    """An ``UpdateDeploymentRequest`` whose mask names exactly the arguments given."""
    message = pb.Deployment(name=deployment_name(name), etag=etag)
    paths: list[str] = []
    if not isinstance(primary, Unset):
        if primary is None:
            raise ValueError("primary: give an alias or a version (a deployment always has a primary)")
        message.primary.CopyFrom(traffic_target(primary))
        paths.append("primary")
    for route, split in (("canary", canary), ("shadow", shadow)):
        if isinstance(split, Unset):
            continue
        if split is not None:
            getattr(message, route).CopyFrom(traffic_split(split))
        paths.append(route)  # named and absent: the split is removed
    for route, percent in (("canary", canary_percent), ("shadow", shadow_percent)):
        if isinstance(percent, Unset):
            continue
        if not isinstance(canary if route == "canary" else shadow, Unset):
            raise ValueError(f"{route}_percent: give {route} or {route}_percent, not both")
        getattr(message, route).percent = percent
        paths.append(f"{route}.percent")  # the share of the existing split, its target kept
    if not isinstance(batching, Unset):
        if batching is not None:
            message.batching.CopyFrom(batching_message(batching))
        paths.append("batching")  # named and absent: batching off, default sizes
    if not isinstance(sample_rate, Unset):
        message.sample_rate = sample_rate
        paths.append("sample_rate")
    if not paths:
        raise ValueError(
            "update_deployment: give primary, canary, shadow, canary_percent, shadow_percent, batching, "
            "sample_rate or several"
        )
    return pb.UpdateDeploymentRequest(deployment=message, update_mask=field_mask_pb2.FieldMask(paths=paths))


def failed_error(deployment: pb.Deployment) -> errors.DeploymentFailed:
    """The error ``wait_ready`` raises for a deployment in ``STATE_FAILED``."""
    return errors.DeploymentFailed(
        f"deployment {deployment.name!r} failed: {deployment.message or 'no message recorded'}",
        deployment=deployment,
    )


def remaining_until(deadline: float | None, name: str) -> float | None:
    """Seconds left before ``deadline`` (``time.monotonic``); DeadlineExceeded naming the deployment once past."""
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise errors.DeadlineExceeded(f"deployment {deployment_name(name)!r} is not ready yet (wait timed out)")
    return remaining
