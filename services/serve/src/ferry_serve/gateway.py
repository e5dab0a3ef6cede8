"""The data plane: Triton's own ``inference.GRPCInferenceService`` on serve's port.

``model_name`` is a deployment id and ``model_version`` a version number, an alias the
deployment follows, or empty (the deployment's traffic split). Each request is routed
(:mod:`ferry_serve.routing`), checked against the version's signature, forwarded to the
Triton model holding that version with the caller's remaining deadline, and answered
with ``model_name`` = the deployment, ``model_version`` = the version that answered and
``id`` = the request id (generated when absent). Samples for monitor and shadow copies
leave the request path through bounded queues.

The repository, shared-memory, trace and log RPCs are not served: the generated base
class answers UNIMPLEMENTED and nothing reaches Triton.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import grpc
import grpc.aio
from opentelemetry import trace
from tritonclient.grpc import service_pb2, service_pb2_grpc

from ferry.monitor.v1 import monitor_pb2
from ferry_common.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from ferry_serve.routing import LoadedVersion, Picked, Router, Routes
from ferry_serve.sampling import Sample, Sampler, Shadows, compare_outputs
from ferry_serve.tensors import check_inputs

__all__ = ["CLASSES_PARAMETER", "TRITON_CHANNEL_OPTIONS", "Gateway"]

CLASSES_PARAMETER = "ferry.classes"
"""Response parameter: a JSON list of the class names of the version that answered."""

Context = grpc.aio.ServicerContext[Any, Any]

TRITON_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # Fail fast while Triton restarts instead of waiting for it to come back.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
_PASS_THROUGH = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
}


class Gateway(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """Routes Triton-protocol calls to the Triton models of each deployment's versions.

    Args:
        router: the routing snapshots.
        sampler: receives samples for monitor; shadows: runs shadow copies.
        max_request_bytes: larger ModelInfer requests are RESOURCE_EXHAUSTED.
        server_version: what ServerMetadata reports.
    """

    def __init__(
        self,
        router: Router,
        sampler: Sampler,
        shadows: Shadows,
        *,
        max_request_bytes: int,
        server_version: str,
    ) -> None:
        self._router = router
        self._sampler = sampler
        self._shadows = shadows
        self._max_request_bytes = max_request_bytes
        self._server_version = server_version
        self._channel: grpc.aio.Channel | None = None
        self._triton: Any = None

    def connect(self, triton_url: str) -> None:
        """Open the channel to Triton (in the server's event loop)."""
        self._channel = grpc.aio.insecure_channel(triton_url, options=TRITON_CHANNEL_OPTIONS)
        self._triton = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)

    # ---------------------------------------------------------------- helpers

    async def _forward(self, rpc: Any, request: Any, context: Context, what: str) -> Any:
        remaining = context.time_remaining()
        try:
            return await rpc(request, timeout=remaining)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            # Triton quotes request values whole (ids, names): keep the trailer small
            # (context.abort bypasses the interceptor's cap).
            details = _cut(error.details() or "")
            if code in _PASS_THROUGH:
                await context.abort(code, f"{what}: {details}")
            if code == grpc.StatusCode.UNAVAILABLE:
                raise Unavailable(f"{what}: Triton is unavailable ({details}); retry shortly") from None
            if code == grpc.StatusCode.NOT_FOUND and "model" in details.lower():
                # The Triton model went away between routing and the call: a swap or a reload.
                raise Unavailable(f"{what}: the version is being swapped or reloaded ({details}); retry") from None
            if code == grpc.StatusCode.NOT_FOUND:
                await context.abort(code, f"{what}: {details}")
            raise FailedPrecondition(f"{what}: the model could not answer: {details}") from None

    def _version_of(self, routes: Routes, requested: str) -> LoadedVersion:
        return routes.pick(requested, 100.0).loaded if requested else routes.primary

    # ---------------------------------------------------------------- server

    async def ServerLive(
        self, request: service_pb2.ServerLiveRequest, context: Context
    ) -> service_pb2.ServerLiveResponse:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: service_pb2.ServerReadyRequest, context: Context
    ) -> service_pb2.ServerReadyResponse:
        # Ready when Triton is live: its own readiness stays false for good once any model
        # failed to load (strict readiness), which says nothing about the deployments.
        try:
            live = await self._triton.ServerLive(service_pb2.ServerLiveRequest(), timeout=2.0)
        except grpc.aio.AioRpcError:
            return service_pb2.ServerReadyResponse(ready=False)
        return service_pb2.ServerReadyResponse(ready=bool(live.live))

    async def ServerMetadata(
        self, request: service_pb2.ServerMetadataRequest, context: Context
    ) -> service_pb2.ServerMetadataResponse:
        return service_pb2.ServerMetadataResponse(
            name="ferry-serve", version=self._server_version, extensions=["statistics", "model_configuration"]
        )

    # ---------------------------------------------------------------- models

    async def ModelReady(
        self, request: service_pb2.ModelReadyRequest, context: Context
    ) -> service_pb2.ModelReadyResponse:
        try:
            loaded = self._version_of(self._router.routes(request.name), request.version)
        except (NotFound, Unavailable):
            return service_pb2.ModelReadyResponse(ready=False)
        try:
            answer = await self._triton.ModelReady(
                service_pb2.ModelReadyRequest(name=loaded.triton_name), timeout=context.time_remaining()
            )
        except grpc.aio.AioRpcError:
            return service_pb2.ModelReadyResponse(ready=False)
        return service_pb2.ModelReadyResponse(ready=bool(answer.ready))

    async def ModelMetadata(
        self, request: service_pb2.ModelMetadataRequest, context: Context
    ) -> service_pb2.ModelMetadataResponse:
        loaded = self._version_of(self._router.routes(_renamed(request.name)), request.version)
        answer = await self._forward(
            self._triton.ModelMetadata,
            service_pb2.ModelMetadataRequest(name=loaded.triton_name),
            context,
            f"deployment {request.name!r}",
        )
        answer.name = request.name
        del answer.versions[:]
        answer.versions.append(str(loaded.version))
        return answer

    async def ModelConfig(
        self, request: service_pb2.ModelConfigRequest, context: Context
    ) -> service_pb2.ModelConfigResponse:
        loaded = self._version_of(self._router.routes(_renamed(request.name)), request.version)
        answer = await self._forward(
            self._triton.ModelConfig,
            service_pb2.ModelConfigRequest(name=loaded.triton_name),
            context,
            f"deployment {request.name!r}",
        )
        answer.config.name = request.name
        return answer

    async def ModelStatistics(
        self, request: service_pb2.ModelStatisticsRequest, context: Context
    ) -> service_pb2.ModelStatisticsResponse:
        if request.name:
            routes = [self._router.routes(request.name)]
        else:
            routes = list(self._router.all_routes())
        response = service_pb2.ModelStatisticsResponse()
        for entry in routes:
            versions = entry.loaded()
            if request.version:
                versions = [self._version_of(entry, request.version)]
            for loaded in versions:
                answer = await self._forward(
                    self._triton.ModelStatistics,
                    service_pb2.ModelStatisticsRequest(name=loaded.triton_name),
                    context,
                    f"deployment {entry.deployment.deployment_id!r}",
                )
                for stats in answer.model_stats:
                    stats.name = entry.deployment.deployment_id
                    stats.version = str(loaded.version)
                    response.model_stats.append(stats)
        return response

    # ---------------------------------------------------------------- inference

    async def ModelInfer(
        self, request: service_pb2.ModelInferRequest, context: Context
    ) -> service_pb2.ModelInferResponse:
        started = time.perf_counter()
        deployment_id = request.model_name
        routes = self._router.routes(deployment_id)
        size = request.ByteSize()
        if size > self._max_request_bytes:
            raise ResourceExhausted(
                f"request: {size} bytes is more than this gateway accepts ({self._max_request_bytes}, "
                "FERRY_SERVE_MAX_REQUEST_BYTES); send fewer rows per request",
                field="request",
            )
        picked = routes.pick(request.model_version, self._router.draw(), self._router.draw())
        loaded = picked.loaded
        check_inputs(request, loaded.input_specs, f"deployment {deployment_id!r} version {loaded.version}")
        # 32 random hex digits like uuid4().hex, at a fifth of its cost on the hot path.
        request_id = request.id or os.urandom(16).hex()
        span = trace.get_current_span()
        span.set_attributes(
            {
                "ferry.deployment": deployment_id,
                "ferry.model": routes.deployment.model_id,
                "ferry.version": loaded.version,
                "ferry.alias": picked.alias,
                "ferry.route": picked.route.value.lower(),
                "ferry.request_id": request_id,
            }
        )
        request.model_name = loaded.triton_name
        request.model_version = ""
        request.id = request_id
        loaded.enter()
        try:
            response = await self._forward(
                self._triton.ModelInfer, request, context, f"deployment {deployment_id!r} version {loaded.version}"
            )
        finally:
            loaded.leave()
        response.model_name = deployment_id
        response.model_version = str(loaded.version)
        response.id = request_id
        if loaded.classes_parameter is not None:
            # The probabilities' column names travel with each answer (the version that
            # answered may differ from request to request under a canary).
            response.parameters[CLASSES_PARAMETER].CopyFrom(loaded.classes_parameter)
        latency_ms = (time.perf_counter() - started) * 1000
        sampled = routes.deployment.sample_rate > 0 and (
            routes.deployment.sample_rate >= 1.0 or self._router.draw() < routes.deployment.sample_rate * 100
        )
        if sampled:
            self._sampler.offer(
                Sample(
                    request_id,
                    deployment_id,
                    loaded.model_version,
                    picked.route.value,
                    request,
                    response,
                    latency_ms,
                    time.time(),
                )
            )
        if picked.shadow is not None and picked.shadow is not loaded:
            self._shadows.submit(
                lambda: self._run_shadow(picked, deployment_id, request, response, request_id, latency_ms)
            )
        return response

    async def _run_shadow(
        self,
        picked: Picked,
        deployment_id: str,
        request: service_pb2.ModelInferRequest,
        primary: service_pb2.ModelInferResponse,
        request_id: str,
        primary_latency_ms: float,
    ) -> None:
        shadow = picked.shadow
        assert shadow is not None
        copy = service_pb2.ModelInferRequest()
        copy.CopyFrom(request)
        copy.model_name = shadow.triton_name
        started = time.perf_counter()
        comparison = monitor_pb2.ShadowComparison(
            primary_model_version=picked.loaded.model_version, primary_latency_ms=primary_latency_ms
        )
        answer: service_pb2.ModelInferResponse | None = None
        shadow.enter()
        try:
            answer = await self._triton.ModelInfer(copy, timeout=30.0)
        except grpc.aio.AioRpcError as error:
            comparison.error = f"{error.code().name}: {error.details()}"
            self._shadows.failed += 1
        finally:
            shadow.leave()
        latency_ms = (time.perf_counter() - started) * 1000
        if answer is not None:
            max_diff, agreement, problem = await asyncio.to_thread(compare_outputs, primary, answer)
            comparison.max_abs_diff, comparison.agreement, comparison.error = max_diff, agreement, problem
        # Every shadow answer is recorded (the comparison is what a shadow is for).
        self._sampler.offer(
            Sample(
                request_id,
                deployment_id,
                shadow.model_version,
                "SHADOW",
                copy,
                answer,
                latency_ms,
                time.time(),
                comparison,
            )
        )


def _cut(text: str, limit: int = 600) -> str:
    """``text`` cut to about ``limit`` characters, keeping its start and its end."""
    return text if len(text) <= limit else f"{text[: limit - 160]} ... {text[-150:]}"


def _renamed(name: str) -> str:
    if not name:
        raise InvalidArgument("name: a deployment id is required", field="name")
    return name
