"""Every acknowledged write survives a kill -9 of the real ``ferry-registry`` process."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

import grpc
import pytest

from ferry.registry.v1 import registry_pb2 as pb
from ferry.registry.v1 import registry_pb2_grpc
from ferry_sdk import free_port, spawn_and_wait

PROD = "models/churn/aliases/production"


def start_registry(state_dir: pathlib.Path, port: int) -> subprocess.Popen[bytes]:
    env = {"FERRY_STATE_DIR": str(state_dir), "OTEL_TRACES_EXPORTER": "none", "FERRY_LOG_LEVEL": "warning"}
    address = f"127.0.0.1:{port}"
    return spawn_and_wait("registry", env=env, address=address, log_path=state_dir / "registry.log", timeout=30).process


@dataclass
class Acknowledged:
    versions: dict[str, int] = field(default_factory=dict)  # request_id -> version
    aliases: list[tuple[int, int]] = field(default_factory=list)  # (revision, version)
    attempted_alias: int = 0


def burst(stub: registry_pb2_grpc.RegistryServiceStub, acked: Acknowledged, stop: threading.Event) -> None:
    """Write until the server goes away, recording what it acknowledged."""
    current = 0
    for index in range(100_000):
        if stop.is_set():
            return
        request_id = f"burst-{index}"
        try:
            version = stub.CreateModelVersion(
                pb.CreateModelVersionRequest(
                    parent="models/churn",
                    model_version=pb.ModelVersion(
                        artifact=pb.Artifact(uri=f"s3://b/{index}.onnx", sha256="ab" * 32, format=1)
                    ),
                    request_id=request_id,
                ),
                timeout=5,
            )
            acked.versions[request_id] = version.version
            acked.attempted_alias = version.version
            alias = stub.SetAlias(
                pb.SetAliasRequest(name=PROD, version=version.version, expected_version=current), timeout=5
            )
            acked.aliases.append((alias.revision, alias.version))
            current = alias.version
        except grpc.RpcError:
            return


@pytest.mark.slow
def test_acknowledged_writes_survive_kill_9(tmp_path: pathlib.Path) -> None:
    port = free_port()
    process = start_registry(tmp_path, port)
    acked = Acknowledged()
    stop = threading.Event()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            stub.CreateModel(pb.CreateModelRequest(model_id="churn"))
            writer = threading.Thread(target=burst, args=(stub, acked, stop))
            writer.start()
            deadline = time.monotonic() + 20
            while len(acked.aliases) < 60 and time.monotonic() < deadline:
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)  # mid-burst: calls are in flight
            process.wait(timeout=10)
            writer.join(timeout=10)
            stop.set()
    finally:
        if process.poll() is None:
            process.kill()
    assert len(acked.aliases) >= 60

    process = start_registry(tmp_path, port)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            for number in acked.versions.values():
                found = stub.GetModelVersion(pb.GetModelVersionRequest(name=f"models/churn/versions/{number}"))
                assert found.version == number
            # The idempotency keys survived too: a retry returns the acknowledged version.
            last_request, last_number = list(acked.versions.items())[-1]
            retry = stub.CreateModelVersion(
                pb.CreateModelVersionRequest(
                    parent="models/churn",
                    model_version=pb.ModelVersion(artifact=pb.Artifact(uri="s3://b/x", sha256="ab" * 32, format=1)),
                    request_id=last_request,
                )
            )
            assert retry.version == last_number
            events = []
            token = ""
            while True:
                page = stub.ListAliasEvents(
                    pb.ListAliasEventsRequest(parent="models/churn", page_size=1000, page_token=token)
                )
                events.extend(page.events)
                token = page.next_page_token
                if not token:
                    break
            recorded = {event.revision: event.to_version for event in events}
            for revision, version in acked.aliases:
                assert recorded.get(revision) == version
            assert [event.revision for event in events] == list(range(1, len(events) + 1))
            alias = stub.GetAlias(pb.GetAliasRequest(name=PROD))
            # The last acknowledged target, or one whose acknowledgement the kill swallowed.
            assert alias.version in {acked.aliases[-1][1], acked.attempted_alias}
    finally:
        process.terminate()
        process.wait(timeout=20)
