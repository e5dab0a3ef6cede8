"""Outbound channels (deadline, token, trace propagation) and the real OTLP exporter."""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
import time
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from ferry.registry.v1 import registry_pb2, registry_pb2_grpc
from ferry_common.client import create_channel, service_config
from ferry_common.server import ServiceDefinition
from ferry_common.settings import Settings
from ferry_common.testing import ServiceThread, test_settings

REGISTRY = "ferry.registry.v1.RegistryService"


def test_retry_policy_covers_only_idempotent_methods() -> None:
    import json

    config = json.loads(service_config([REGISTRY]))
    methods = {entry["method"] for entry in config["methodConfig"][0]["name"]}
    assert {"GetModel", "ListModels", "ResolveAlias", "WatchAliases", "DownloadModelVersion"} <= methods
    assert not methods & {"CreateModel", "SetAlias", "DeleteModel", "UploadModelVersion"}
    assert config["methodConfig"][0]["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


def test_channel_applies_default_deadline_and_sends_the_token(tmp_path: pathlib.Path, probe_build: Any) -> None:
    tokens = tmp_path / "tokens.yaml"
    digest = hashlib.sha256(b"svc-token").hexdigest()
    tokens.write_text(yaml.safe_dump({"tokens": [{"identity": "train-service", "role": "editor", "sha256": digest}]}))
    server_settings = test_settings("registry", tmp_path, {"FERRY_AUTH_TOKENS_FILE": str(tokens)})
    with ServiceThread(server_settings, probe_build) as service:
        client_settings = test_settings(
            "train", tmp_path, {"FERRY_AUTH_TOKEN": "svc-token", "FERRY_CALL_TIMEOUT_SECONDS": "0.3"}
        )

        async def calls() -> tuple[str, grpc.StatusCode]:
            async with create_channel(client_settings, "registry", [REGISTRY], target=service.target) as channel:
                stub = registry_pb2_grpc.RegistryServiceStub(channel)
                model = await stub.CreateModel(registry_pb2.CreateModelRequest(model_id="m"))
                try:
                    await stub.ListModels(registry_pb2.ListModelsRequest(page_size=2000))
                except grpc.aio.AioRpcError as exc:
                    return model.description, exc.code()
                return model.description, grpc.StatusCode.OK

        actor, slow_code = asyncio.run(calls())
    assert actor == "train-service"
    assert slow_code == grpc.StatusCode.DEADLINE_EXCEEDED


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Receives OTLP exports, as monitor will (test double for the receiving end only)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, bytes, bytes]] = []

    async def Export(self, request: Any, context: Any) -> Any:
        for resource_spans in request.resource_spans:
            attributes = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append((attributes["service.name"], span.name, span.trace_id, span.parent_span_id))
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.mark.slow
def test_spans_are_exported_over_otlp_and_propagated_between_services(tmp_path: pathlib.Path, probe_build: Any) -> None:
    collector = Collector()

    async def build_collector(settings: Settings, provider: TracerProvider) -> ServiceDefinition:
        return ServiceDefinition(
            register=lambda server: trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server),
            service_names=["opentelemetry.proto.collector.trace.v1.TraceService"],
        )

    with ServiceThread(test_settings("monitor", tmp_path / "m"), build_collector) as monitor:
        export_env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": monitor.target}
        registry_settings = test_settings("registry", tmp_path / "r", export_env)
        registry = ServiceThread(registry_settings, probe_build).start()
        health_pb2_grpc.HealthStub(registry.channel()).Check(health_pb2.HealthCheckRequest())

        client_settings = test_settings("train", tmp_path / "t", export_env)
        from ferry_common.tracing import configure_tracing

        client_provider = configure_tracing(client_settings)

        async def call() -> None:
            channel = create_channel(
                client_settings, "registry", [REGISTRY], tracer_provider=client_provider, target=registry.target
            )
            async with channel:
                await registry_pb2_grpc.RegistryServiceStub(channel).GetModel(
                    registry_pb2.GetModelRequest(name="models/x")
                )

        asyncio.run(call())
        client_provider.shutdown()
        registry.stop()  # flushes the registry's spans

        deadline = time.monotonic() + 10
        while len(collector.spans) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)

    by_service = {service: (name, trace_id, parent) for service, name, trace_id, parent in collector.spans}
    assert set(by_service) == {"ferry-registry", "ferry-train"}, collector.spans  # no health-check span
    server_name, server_trace, server_parent = by_service["ferry-registry"]
    client_name, client_trace, _ = by_service["ferry-train"]
    assert server_name == client_name == "/ferry.registry.v1.RegistryService/GetModel"
    assert server_trace == client_trace and server_parent  # one trace across the two processes' code
