"""A small real service for exercising the shared runtime.

It implements a few RegistryService methods (only their message types matter) so
the tests drive the real server bootstrap, interceptors and generated stubs.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from ferry.registry.v1 import registry_pb2, registry_pb2_grpc
from ferry_common import errors
from ferry_common.auth import current_actor
from ferry_common.server import ServiceDefinition
from ferry_common.settings import Settings

ERRORS: dict[str, Exception] = {
    "invalid": errors.InvalidArgument("model_id: 'Bad' is not a valid id"),
    "missing": errors.NotFound('model "missing" not found'),
    "exists": errors.AlreadyExists('model "exists" already exists'),
    "precondition": errors.FailedPrecondition("version 3 is aliased"),
    "aborted": errors.Aborted("alias production points at 2, expected 1"),
    "exhausted": errors.ResourceExhausted("artifact larger than 2 GiB"),
    "unavailable": errors.Unavailable("database unreachable"),
    "boom": RuntimeError("secret internal detail /etc/passwd"),
}


class ProbeServicer(registry_pb2_grpc.RegistryServiceServicer):
    """GetModel raises the error named by the model id; ListModels sleeps."""

    async def GetModel(self, request: registry_pb2.GetModelRequest, context: Any) -> registry_pb2.Model:
        model_id = request.name.removeprefix("models/")
        if model_id in ERRORS:
            raise ERRORS[model_id]
        return registry_pb2.Model(name=request.name, description=current_actor())

    async def ListModels(
        self, request: registry_pb2.ListModelsRequest, context: Any
    ) -> registry_pb2.ListModelsResponse:
        await asyncio.sleep(request.page_size / 1000)
        return registry_pb2.ListModelsResponse(next_page_token="slept")

    async def CreateModel(self, request: registry_pb2.CreateModelRequest, context: Any) -> registry_pb2.Model:
        return registry_pb2.Model(name=f"models/{request.model_id}", description=current_actor())

    async def DeleteModel(self, request: registry_pb2.DeleteModelRequest, context: Any) -> Any:
        from google.protobuf import empty_pb2

        return empty_pb2.Empty()

    async def WatchAliases(self, request: registry_pb2.WatchAliasesRequest, context: Any) -> Any:
        for revision in range(1, 4):
            if request.parent == "models/boom" and revision == 2:
                raise errors.NotFound('model "boom" not found')
            yield registry_pb2.AliasEvent(revision=revision)


async def build_probe(settings: Settings, provider: TracerProvider) -> ServiceDefinition:
    servicer = ProbeServicer()
    return ServiceDefinition(
        register=lambda server: registry_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, server),
        service_names=["ferry.registry.v1.RegistryService"],
    )


@pytest.fixture(scope="session")
def probe_build() -> Any:
    """The build function of the probe service (for ServiceThread)."""
    return build_probe
