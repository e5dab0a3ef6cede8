"""Typed exceptions for every failed Ferry call.

Every ``grpc.RpcError`` a client method meets is raised again as one of these, with
the status ``code``, the server's ``message`` and, when the server named it in the
rich status details (a ``google.rpc.BadRequest`` field violation in the
``grpc-status-details-bin`` trailer), the offending request ``field``. The original
``grpc.RpcError`` stays available as ``__cause__``.

    try:
        registry.get_model("churn")
    except NotFound as error:
        print(error.code, error.message, error.field)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "STATUS_DETAILS_KEY",
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DeadlineExceeded",
    "DeploymentFailed",
    "FailedPrecondition",
    "FerryError",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "TrainingJobFailed",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "from_rpc_error",
]

STATUS_DETAILS_KEY = "grpc-status-details-bin"


class FerryError(Exception):
    """A Ferry call failed.

    Attributes:
        code: the gRPC status code.
        message: the server's message (it names the field and the value).
        field: the offending request field (``header.dataset_id``), when the server
            sent a ``google.rpc.BadRequest`` field violation; ``None`` otherwise.
        status: the full ``google.rpc.Status`` from the trailer, when sent.
    """

    default_code = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        field: str | None = None,
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(message)
        self.code: grpc.StatusCode = code if code is not None else self.default_code
        self.message = message
        self.field = field
        self.status = status

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        return f"{self.code.name}: {self.message}{where}"


class TrainingJobFailed(FerryError):
    """A training job ended ``FAILED`` (raised by ``TrainClient.wait_for``, not by a call).

    Attributes:
        job: the final ``ferry.train.v1.TrainingJob``; ``job.name`` names it and ``job.error`` says why.
    """

    default_code = grpc.StatusCode.ABORTED

    def __init__(self, message: str, *, job: Any) -> None:
        super().__init__(message)
        self.job = job


class DeploymentFailed(FerryError):
    """A deployment is ``FAILED`` (raised by ``ServeClient.wait_ready``, not by a call).

    Attributes:
        deployment: the ``ferry.serve.v1.Deployment``; ``deployment.message`` says why.
    """

    default_code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, *, deployment: Any) -> None:
        super().__init__(message)
        self.deployment = deployment


class Cancelled(FerryError):
    """The call was cancelled (usually by the caller)."""

    default_code = grpc.StatusCode.CANCELLED


class InvalidArgument(FerryError):
    """A request field is malformed; ``field`` names it."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(FerryError):
    """The call did not finish before its deadline."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(FerryError):
    """A referenced resource does not exist."""

    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(FerryError):
    """The id is already taken."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(FerryError):
    """The caller's role does not allow this method."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(FerryError):
    """Too large, or a quota is used up."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(FerryError):
    """Valid in form but not in the current state (delete an aliased version...)."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(FerryError):
    """A compare-and-set or etag check failed: re-read and retry."""

    default_code = grpc.StatusCode.ABORTED


class Unimplemented(FerryError):
    """The server does not implement this method (yet)."""

    default_code = grpc.StatusCode.UNIMPLEMENTED


class Internal(FerryError):
    """An unexpected server error (details are in the server's log)."""

    default_code = grpc.StatusCode.INTERNAL


class Unavailable(FerryError):
    """The service, or a backend behind it, cannot be reached."""

    default_code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(FerryError):
    """Missing or unknown credentials (``FERRY_AUTH_TOKEN``)."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: Mapping[grpc.StatusCode, type[FerryError]] = {
    cls.default_code: cls
    for cls in (
        Cancelled,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        Unimplemented,
        Internal,
        Unavailable,
        Unauthenticated,
    )
}


def _rich_status(trailing_metadata: Iterable[tuple[str, Any]] | None) -> status_pb2.Status | None:
    # Parsed here rather than with grpc_status.rpc_status.from_call, which raises when
    # the trailer's message differs from the status line by a byte (truncation).
    for key, value in trailing_metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:
                return None
    return None


def _field(status: status_pb2.Status | None) -> str | None:
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            if bad_request.field_violations:
                return bad_request.field_violations[0].field or None
    return None


def from_rpc_error(error: grpc.RpcError) -> FerryError:
    """The typed exception for a failed call (sync ``grpc.RpcError`` or ``grpc.aio.AioRpcError``)."""
    code_method = getattr(error, "code", None)
    code: grpc.StatusCode = (code_method() if callable(code_method) else None) or grpc.StatusCode.UNKNOWN
    details_method = getattr(error, "details", None)
    message = (details_method() if callable(details_method) else None) or str(error)
    trailers_method = getattr(error, "trailing_metadata", None)
    status = _rich_status(trailers_method() if callable(trailers_method) else None)
    cls = _BY_CODE.get(code, FerryError)
    return cls(message, code=code, field=_field(status), status=status)
