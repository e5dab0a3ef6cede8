"""One log line per RPC: info for the control planes, debug for the inference data plane."""

from __future__ import annotations

import pathlib

import grpc
import pytest
from structlog.testing import capture_logs
from tritonclient.grpc import service_pb2, service_pb2_grpc

from ferry.registry.v1 import registry_pb2, registry_pb2_grpc
from ferry_common.testing import ServiceThread, test_settings


def _rpc_lines(logs: list[dict[str, object]], method: str) -> list[dict[str, object]]:
    return [entry for entry in logs if entry.get("event") == "rpc" and entry.get("method") == method]


def test_data_plane_calls_log_at_debug_and_control_plane_calls_at_info(tmp_path: pathlib.Path) -> None:
    from ferry_registry.__main__ import build as build_registry
    from ferry_serve.__main__ import build as build_serve

    with (
        ServiceThread(test_settings("serve", tmp_path / "serve"), build_serve) as serve,
        ServiceThread(test_settings("registry", tmp_path / "registry"), build_registry) as registry,
        capture_logs() as logs,
    ):
        inference = service_pb2_grpc.GRPCInferenceServiceStub(serve.channel())
        assert inference.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live
        with pytest.raises(grpc.RpcError):  # a failed data-plane call is logged at info
            inference.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=10)
        registry_pb2_grpc.RegistryServiceStub(registry.channel()).ListModels(registry_pb2.ListModelsRequest())
    data_plane = _rpc_lines(logs, "/inference.GRPCInferenceService/ServerLive")
    refused = _rpc_lines(logs, "/inference.GRPCInferenceService/RepositoryIndex")
    assert [entry["log_level"] for entry in refused] == ["info"]
    control_plane = _rpc_lines(logs, "/ferry.registry.v1.RegistryService/ListModels")
    assert [entry["log_level"] for entry in data_plane] == ["debug"]
    assert [entry["log_level"] for entry in control_plane] == ["info"]
