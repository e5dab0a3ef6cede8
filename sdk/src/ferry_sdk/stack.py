"""Start, stop and inspect the local stack: the five services as separate processes.

``ferry up`` starts each ``ferry-<service>`` console script found beside the running
interpreter, detached, with its log in ``$FERRY_STATE_DIR/logs/<service>.log`` and
its pid in ``$FERRY_STATE_DIR/run/<service>.pid``; ``ferry down`` sends SIGTERM (a
graceful drain) and waits. Addresses come from the same ``FERRY_<SERVICE>_ADDRESS``
variables the services read.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["SERVICES", "ServiceStatus", "StackError", "addresses", "health", "start", "state_dir", "stop"]

SERVICES = ("registry", "ingest", "train", "serve", "monitor")
_DEFAULT_PORTS = {"registry": 50051, "ingest": 50052, "train": 50053, "serve": 50054, "monitor": 50055}


class StackError(RuntimeError):
    """A service could not be started or stopped."""


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    address: str
    pid: int | None
    health: str


def state_dir(environ: Mapping[str, str] = os.environ) -> pathlib.Path:
    return pathlib.Path(environ.get("FERRY_STATE_DIR") or "./.ferry").expanduser().resolve()


def addresses(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    return {
        name: environ.get(f"FERRY_{name.upper()}_ADDRESS") or f"127.0.0.1:{port}"
        for name, port in _DEFAULT_PORTS.items()
    }


def _dial(address: str) -> str:
    # A service listening on every interface is reached on loopback.
    host, _, port = address.rpartition(":")
    return f"127.0.0.1:{port}" if host in {"0.0.0.0", "[::]", ""} else address


def health(address: str, timeout: float = 1.0) -> str:
    """``SERVING``, ``NOT_SERVING`` or ``DOWN``."""
    with grpc.insecure_channel(_dial(address)) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return "DOWN"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def _pid_file(root: pathlib.Path, service: str) -> pathlib.Path:
    return root / "run" / f"{service}.pid"


def _running_pid(root: pathlib.Path, service: str) -> int | None:
    path = _pid_file(root, service)
    try:
        pid = int(path.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def status(environ: Mapping[str, str] = os.environ) -> list[ServiceStatus]:
    root = state_dir(environ)
    return [
        ServiceStatus(name, address, _running_pid(root, name), health(address))
        for name, address in addresses(environ).items()
    ]


def start(service: str, environ: Mapping[str, str] = os.environ, timeout: float = 60.0) -> ServiceStatus:
    """Start one service detached and wait until it reports SERVING."""
    root = state_dir(environ)
    address = addresses(environ)[service]
    pid = _running_pid(root, service)
    if pid is not None and health(address) == "SERVING":
        return ServiceStatus(service, address, pid, "SERVING")
    (root / "logs").mkdir(parents=True, exist_ok=True)
    (root / "run").mkdir(parents=True, exist_ok=True)
    executable = pathlib.Path(sys.executable).parent / f"ferry-{service}"
    log_path = root / "logs" / f"{service}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(executable)],
            env={**environ, "FERRY_STATE_DIR": str(root), "FERRY_LOG_FORMAT": environ.get("FERRY_LOG_FORMAT", "json")},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pid_file(root, service).write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-5:]
            raise StackError(f"ferry-{service} exited with code {proc.returncode}; last log lines:\n" + "\n".join(tail))
        if health(address, timeout=0.5) == "SERVING":
            return ServiceStatus(service, address, proc.pid, "SERVING")
        time.sleep(0.2)
    raise StackError(f"ferry-{service} did not report SERVING on {address} within {timeout:.0f}s (log: {log_path})")


def stop(service: str, environ: Mapping[str, str] = os.environ, timeout: float = 30.0) -> bool:
    """SIGTERM one service and wait for it to drain; False when it was not running."""
    root = state_dir(environ)
    pid = _running_pid(root, service)
    if pid is None:
        _pid_file(root, service).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    _pid_file(root, service).unlink(missing_ok=True)
    return True
