"""Domain errors and the one table that maps them to gRPC status codes.

Services raise these plain exceptions (they know nothing of grpc); the error
interceptor in :mod:`ferry_common.interceptors` turns them into statuses. The
message must name the field and the value: ``dataset "churn": version 7 not found``.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

__all__ = [
    "STATUS_CODES",
    "Aborted",
    "AlreadyExists",
    "FailedPrecondition",
    "FerryError",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "status_code_for",
]


class FerryError(Exception):
    """Base of every error a caller is meant to see."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgument(FerryError):
    """A request field is malformed."""


class NotFound(FerryError):
    """A referenced resource does not exist."""


class AlreadyExists(FerryError):
    """An id is already taken."""


class FailedPrecondition(FerryError):
    """The request is well formed but not valid in the current state."""


class Aborted(FerryError):
    """A compare-and-set or etag check failed; re-read and retry."""


class ResourceExhausted(FerryError):
    """Too large, or a quota is used up."""


class Unavailable(FerryError):
    """A backend (database, object store, Triton) cannot be reached."""


class Unauthenticated(FerryError):
    """Missing or unknown credentials."""


class PermissionDenied(FerryError):
    """The caller's role does not allow this method."""


STATUS_CODES: Mapping[type[Exception], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Aborted: grpc.StatusCode.ABORTED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    # Generated servicer base classes raise this for RPCs nobody implemented yet.
    NotImplementedError: grpc.StatusCode.UNIMPLEMENTED,
}


def status_code_for(error: BaseException) -> grpc.StatusCode | None:
    """The status of a known error, or ``None`` for an unexpected one."""
    for cls in type(error).__mro__:
        code = STATUS_CODES.get(cls)
        if code is not None:
            return code
    return None
