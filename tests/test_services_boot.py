"""Every service boots with no configuration, reports SERVING, lists its services
through reflection, answers UNIMPLEMENTED for RPCs later issues fill, logs one JSON
line per RPC, and exits cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ferry_common.pytest_plugin import free_port

BIN = pathlib.Path(sys.executable).parent

EXPECTED_SERVICES = {
    "registry": {"ferry.registry.v1.RegistryService"},
    "ingest": {"ferry.ingest.v1.IngestService"},
    "train": {"ferry.train.v1.TrainService"},
    "serve": {"ferry.serve.v1.ServeService", "inference.GRPCInferenceService"},
    "monitor": {"ferry.monitor.v1.MonitorService", "opentelemetry.proto.collector.trace.v1.TraceService"},
}
STANDARD = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


def start(service: str, state: pathlib.Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "FERRY_STATE_DIR": str(state),
        f"FERRY_{service.upper()}_ADDRESS": address,
        "OTEL_TRACES_EXPORTER": "none",
        "FERRY_LOG_FORMAT": "json",
        "FERRY_SHUTDOWN_GRACE_SECONDS": "5",
    }
    proc = subprocess.Popen(
        [str(BIN / f"ferry-{service}")],
        env=env,
        cwd=state,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    return proc, address


def wait_serving(address: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    channel = grpc.insecure_channel(address)
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"service exited early: {proc.stderr.read() if proc.stderr else ''}"
        try:
            if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            time.sleep(0.2)
    raise AssertionError(f"{address} never reported SERVING")


def reflected_services(address: str) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(address))
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = stub.ServerReflectionInfo(iter([request]), timeout=5)
    return {service.name for response in responses for service in response.list_services_response.service}


@pytest.fixture(params=sorted(EXPECTED_SERVICES))
def booted(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    service: str = request.param
    proc, address = start(service, tmp_path)
    try:
        wait_serving(address, proc)
        yield service, address, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_service_boots_serves_health_and_reflection_and_drains(booted: tuple[str, str, subprocess.Popen[str]]) -> None:
    service, address, proc = booted
    channel = grpc.insecure_channel(address)
    health = health_pb2_grpc.HealthStub(channel)
    for name in EXPECTED_SERVICES[service]:
        status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING, name
    assert reflected_services(address) == EXPECTED_SERVICES[service] | STANDARD

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert time.monotonic() - started < 10
    assert proc.stderr is not None
    lines = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert "serving" in events and "stopped" in events


# RPCs that later issues fill; until then they must answer UNIMPLEMENTED, never crash.
UNFILLED = {
    "train": ("/ferry.train.v1.TrainService/CreateTrainingJob", "ferry.train.v1.train_pb2", "CreateTrainingJobRequest"),
    "serve": ("/ferry.serve.v1.ServeService/GetDeployment", "ferry.serve.v1.serve_pb2", "GetDeploymentRequest"),
    "monitor": (
        "/ferry.monitor.v1.MonitorService/GetLatencySummary",
        "ferry.monitor.v1.monitor_pb2",
        "GetLatencySummaryRequest",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("service", sorted(UNFILLED))
def test_unfilled_rpc_is_unimplemented_and_logged(service: str, tmp_path: pathlib.Path) -> None:
    import importlib

    method, module_name, request_name = UNFILLED[service]
    request_type = getattr(importlib.import_module(module_name), request_name)
    proc, address = start(service, tmp_path)
    try:
        wait_serving(address, proc)
        call = grpc.insecure_channel(address).unary_unary(
            method, request_serializer=request_type.SerializeToString, response_deserializer=lambda b: b
        )
        with pytest.raises(grpc.RpcError) as raised:
            call(request_type(), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stderr is not None
    lines = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]
    rpc = [line for line in lines if line.get("event") == "rpc" and line.get("method") == method]
    assert len(rpc) == 1, lines
    assert rpc[0]["code"] == "UNIMPLEMENTED"
    assert rpc[0]["duration_ms"] >= 0
    assert len(rpc[0]["trace_id"]) == 32
    assert rpc[0]["service"] == f"ferry-{service}"
