"""Server interceptors: one RPC log line + error mapping, and authentication.

Both wrap the method's behaviour rather than short-circuiting in
``intercept_service``, so that they run in the RPC's own task: context variables
(the caller's identity, the log context) set here are seen by the servicer.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import structlog
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry import trace

from ferry_common import auth
from ferry_common.errors import FerryError, status_code_for

__all__ = ["STATUS_DETAILS_KEY", "AuthInterceptor", "CallInterceptor", "status_details"]

_log = structlog.get_logger("ferry.rpc")
# The inference data plane (serve's ``inference.GRPCInferenceService``: ModelInfer and
# friends) and health probes are hot paths: one line per call at debug only. Errors
# there are still logged at info (see ``finish``).
_QUIET_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.",
    "/inference.GRPCInferenceService/",
    # Monitor's OTLP receiver: every service exports a batch every few seconds.
    "/opentelemetry.proto.collector.trace.v1.TraceService/",
)
# Trailing metadata key of the rich status (google.rpc.Status), as grpcio-status writes it.
STATUS_DETAILS_KEY = "grpc-status-details-bin"

Behavior = Callable[..., Any]


def _wrap_handler(handler: Any, method: str, around: Callable[..., Any]) -> Any:
    """Rebuild ``handler`` with each behaviour wrapped by ``around``."""
    if handler is None:
        return None
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
        ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
        ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
        ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
    )
    for attribute, factory, streaming in kinds:
        behavior = getattr(handler, attribute)
        if behavior is not None:
            return factory(
                around(behavior, method, streaming),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


async def _call_unary(behavior: Behavior, request: Any, context: Any) -> Any:
    result = behavior(request, context)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _call_stream(behavior: Behavior, request: Any, context: Any) -> AsyncIterator[Any]:
    result = behavior(request, context)
    if inspect.isasyncgen(result):
        async for item in result:
            yield item
    elif inspect.isawaitable(result):
        await result  # the behaviour wrote its responses with context.write()
    elif result is not None:
        for item in result:
            yield item


def _trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


class CallInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Maps domain errors to statuses and logs one line per RPC.

    Unexpected exceptions become INTERNAL with a generic message; the traceback is
    logged, never sent to the caller.
    """

    def __init__(self) -> None:
        # method -> (the handler grpc gave, its wrapped copy). The wrapping depends only on the
        # handler and the method, and rebuilding it (a handler and three closures) on every
        # call was a measurable share of a ModelInfer forwarded by serve (bench/serve).
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped: Any = _wrap_handler(handler, method, self._around)
        if handler is not None:
            self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _around(self, behavior: Behavior, method: str, streaming: bool) -> Behavior:
        quiet = method.startswith(_QUIET_SERVICES)

        async def finish(context: Any, started: float, code: grpc.StatusCode, error: BaseException | None) -> None:
            if quiet and code is grpc.StatusCode.OK and not _log.is_enabled_for(logging.DEBUG):
                return  # a hot-path call that succeeded: nothing would be written, build nothing
            fields: dict[str, Any] = {
                "method": method,
                "code": code.name,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "trace_id": _trace_id(),
                "actor": auth.current_actor(),
            }
            if code is grpc.StatusCode.INTERNAL and error is not None:
                _log.error("rpc", **fields, exc_info=error)
            elif quiet and code is grpc.StatusCode.OK:
                _log.debug("rpc", **fields)
            else:
                _log.info("rpc", **fields)

        async def abort(context: Any, exc: BaseException) -> None:
            code = status_code_for(exc) or grpc.StatusCode.INTERNAL
            if code is grpc.StatusCode.UNIMPLEMENTED:
                await context.abort(code, f"{method} is not implemented yet")
            elif code is grpc.StatusCode.INTERNAL:
                await context.abort(code, "internal error (details are in the server log)")
            message = _bounded(exc.message if isinstance(exc, FerryError) else str(exc))
            field = exc.field if isinstance(exc, FerryError) else None
            if field:
                await context.abort(code, message, ((STATUS_DETAILS_KEY, status_details(code, message, field)),))
            await context.abort(code, message)

        def code_of(exc: BaseException) -> grpc.StatusCode:
            return status_code_for(exc) or grpc.StatusCode.INTERNAL

        if streaming:

            async def stream_behavior(request: Any, context: Any) -> AsyncIterator[Any]:
                started, code, error = time.perf_counter(), grpc.StatusCode.OK, None
                try:
                    async for item in _call_stream(behavior, request, context):
                        yield item
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except Exception as exc:  # every error is turned into a status here
                    error, code = exc, code_of(exc)
                    await finish(context, started, code, error)
                    await abort(context, exc)
                else:
                    code = context.code() or grpc.StatusCode.OK
                await finish(context, started, code, error)

            return stream_behavior

        async def unary_behavior(request: Any, context: Any) -> Any:
            started, code, error = time.perf_counter(), grpc.StatusCode.OK, None
            try:
                response = await _call_unary(behavior, request, context)
            except grpc.aio.AbortError:
                await finish(context, started, context.code() or grpc.StatusCode.UNKNOWN, None)
                raise
            except Exception as exc:  # every error is turned into a status here
                error, code = exc, code_of(exc)
                await finish(context, started, code, error)
                await abort(context, exc)
            await finish(context, started, context.code() or code, error)
            return response

        return unary_behavior


# The status message travels in trailing metadata, which grpc clients cap at 8 KB by
# default: a longer message would reach the caller as RESOURCE_EXHAUSTED instead of the
# real status. Messages echo only short prefixes of values (``names.shorten``); this is
# the last line of defence. Bytes, not characters: grpc percent-encodes every non-ASCII
# byte, so 1,000 bytes are at most 3,000 on the wire, and the rich status repeats the
# message twice more (base64): about 6 KB in all, under the 8 KB limit.
MAX_MESSAGE_BYTES = 1000


def status_details(code: grpc.StatusCode, message: str, field: str) -> bytes:
    """The serialized ``google.rpc.Status`` naming ``field`` in a ``google.rpc.BadRequest``.

    Clients read it from the ``grpc-status-details-bin`` trailer, e.g. with
    ``grpc_status.rpc_status.from_call(error)`` (grpcio-status).
    """
    violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    serialized: bytes = status.SerializeToString()
    return serialized


def _bounded(message: str) -> str:
    encoded = message.encode("utf-8", "replace")
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return message
    return encoded[:MAX_MESSAGE_BYTES].decode("utf-8", "ignore") + f"... ({len(message)} characters)"


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Checks the bearer token and role, and records the caller's identity."""

    def __init__(self, tokens: auth.TokenTable) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if auth.is_exempt(method):
            return handler
        metadata = handler_call_details.invocation_metadata
        wrapped: Any = _wrap_handler(
            handler, method, lambda behavior, _m, streaming: self._around(behavior, method, metadata, streaming)
        )
        return wrapped

    def _check(self, method: str, metadata: Any) -> None:
        principal = self._tokens.authenticate(metadata)
        self._tokens.authorize(principal, method)
        auth.current_principal.set(principal)

    def _around(self, behavior: Behavior, method: str, metadata: Any, streaming: bool) -> Behavior:
        if streaming:

            async def stream_behavior(request: Any, context: Any) -> AsyncIterator[Any]:
                self._check(method, metadata)
                async for item in _call_stream(behavior, request, context):
                    yield item

            return stream_behavior

        async def unary_behavior(request: Any, context: Any) -> Any:
            self._check(method, metadata)
            return await _call_unary(behavior, request, context)

        return unary_behavior
