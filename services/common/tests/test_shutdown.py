"""SIGTERM drain: in-flight calls finish, new calls are refused."""

from __future__ import annotations

import pathlib
import threading
import time
from typing import Any

import grpc
import pytest

from ferry.registry.v1 import registry_pb2, registry_pb2_grpc
from ferry_common.testing import ServiceThread, test_settings


def test_in_flight_call_completes_and_new_calls_are_refused(tmp_path: pathlib.Path, probe_build: Any) -> None:
    service = ServiceThread(test_settings("registry", tmp_path), probe_build).start()
    stub = registry_pb2_grpc.RegistryServiceStub(service.channel())
    stub.GetModel(registry_pb2.GetModelRequest(name="models/warm"))  # connection up

    result: dict[str, object] = {}

    def slow_call() -> None:
        try:
            # page_size doubles as the sleep in milliseconds in the probe servicer.
            result["response"] = stub.ListModels(registry_pb2.ListModelsRequest(page_size=1500), timeout=10)
        except grpc.RpcError as exc:  # pragma: no cover - reported by the assertion below
            result["error"] = exc

    caller = threading.Thread(target=slow_call)
    caller.start()
    time.sleep(0.3)  # the slow call is now in flight
    drained = service.begin_stop(grace=5.0)
    time.sleep(0.2)

    new_stub = registry_pb2_grpc.RegistryServiceStub(service.channel())
    with pytest.raises(grpc.RpcError) as refused:
        new_stub.GetModel(registry_pb2.GetModelRequest(name="models/late"), timeout=2)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    caller.join(timeout=10)
    drained.result(timeout=10)
    assert "error" not in result, result.get("error")
    assert result["response"].next_page_token == "slept"  # type: ignore[attr-defined]
    service.stop()


def test_calls_past_the_grace_period_are_cancelled(tmp_path: pathlib.Path, probe_build: Any) -> None:
    service = ServiceThread(test_settings("registry", tmp_path), probe_build).start()
    stub = registry_pb2_grpc.RegistryServiceStub(service.channel())
    errors: list[grpc.StatusCode] = []

    def very_slow_call() -> None:
        try:
            stub.ListModels(registry_pb2.ListModelsRequest(page_size=60_000), timeout=30)
        except grpc.RpcError as exc:
            errors.append(exc.code())

    caller = threading.Thread(target=very_slow_call)
    caller.start()
    time.sleep(0.3)
    started = time.monotonic()
    service.begin_stop(grace=0.5).result(timeout=10)
    caller.join(timeout=10)
    assert time.monotonic() - started < 5
    assert errors == [grpc.StatusCode.UNAVAILABLE] or errors == [grpc.StatusCode.CANCELLED]
    service.stop()
