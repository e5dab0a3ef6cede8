"""Start, stop and inspect the local stack: the five services as separate processes.

``ferry up`` starts each ``ferry-<service>`` console script found beside the running
interpreter (:func:`ferry_sdk.spawn.spawn`), detached, with its log in
``$FERRY_STATE_DIR/logs/<service>.log`` and its pid in
``$FERRY_STATE_DIR/run/<service>.pid``, in two waves (:data:`WAVES`): registry, ingest
and monitor first, then, once those serve, train and serve, which call them at start
(serve re-applies its deployments through the registry). ``ferry down`` sends SIGTERM
(a graceful drain) to all of them at once and waits. Addresses come from the same
``FERRY_<SERVICE>_ADDRESS`` variables the services read.

A service this process started is its child: stopping it waits for and *reaps* it
(an unreaped child is a zombie, which ``kill(pid, 0)`` still reports alive). One
started by another process (``ferry up`` earlier, then ``ferry down``) is watched
through ``/proc`` until it is gone.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ferry_sdk.spawn import ServiceProcess, SpawnError, dial_address, health_status, pid_alive, spawn, stop_all

__all__ = [
    "SERVICES",
    "WAVES",
    "ServiceStatus",
    "StackError",
    "addresses",
    "health",
    "start",
    "start_all",
    "state_dir",
    "status",
    "stop",
    "stop_many",
]

SERVICES = ("registry", "ingest", "train", "serve", "monitor")
WAVES = (("registry", "ingest", "monitor"), ("train", "serve"))
"""The order :func:`start_all` starts services in: each wave once the one before serves."""
_DEFAULT_PORTS = {"registry": 50051, "ingest": 50052, "train": 50053, "serve": 50054, "monitor": 50055}

StackError = SpawnError
"""A service could not be started."""

# Services this process started: stopping them reaps them.
_CHILDREN: dict[int, ServiceProcess] = {}


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


def health(address: str, timeout: float = 1.0) -> str:
    """``SERVING``, ``NOT_SERVING`` or ``DOWN``."""
    return health_status(dial_address(address), timeout)


def _pid_file(root: pathlib.Path, service: str) -> pathlib.Path:
    return root / "run" / f"{service}.pid"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: it exited and only waits to be reaped)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.running()
    return pid_alive(pid)


def _running_pid(root: pathlib.Path, service: str) -> int | None:
    try:
        pid = int(_pid_file(root, service).read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def status(environ: Mapping[str, str] = os.environ) -> list[ServiceStatus]:
    root = state_dir(environ)
    return [
        ServiceStatus(name, address, _running_pid(root, name), health(address))
        for name, address in addresses(environ).items()
    ]


def _spawn(service: str, environ: Mapping[str, str]) -> ServiceProcess:
    root = state_dir(environ)
    (root / "run").mkdir(parents=True, exist_ok=True)
    process = spawn(
        service,
        env={
            **environ,
            "FERRY_STATE_DIR": str(root),
            "FERRY_LOG_FORMAT": environ.get("FERRY_LOG_FORMAT", "json"),
        },
        address=addresses(environ)[service],
        log_path=root / "logs" / f"{service}.log",
        inherit_environment=False,
        new_session=True,
    )
    _CHILDREN[process.pid] = process
    _pid_file(root, service).write_text(str(process.pid))
    return process


def start_all(
    services: Iterable[str] = SERVICES, environ: Mapping[str, str] = os.environ, timeout: float = 60.0
) -> list[ServiceStatus]:
    """Start several services (detached) in dependency waves and wait until each reports SERVING.

    The services of one wave (:data:`WAVES`) start together; the next wave starts once they
    all serve, so train and serve find the registry and ingest up when they start. A
    service already running and SERVING is left as it is. ``timeout`` covers all waves.

    Returns:
        Each chosen service's status, in the order given.

    Raises:
        StackError: one exited early or did not serve in time (the ones started keep
            running; later waves are not started).
    """
    root = state_dir(environ)
    results: dict[str, ServiceStatus] = {}
    chosen = list(services)
    deadline = time.monotonic() + timeout
    for wave in _waves(chosen):
        started: list[ServiceProcess] = []
        for service in wave:
            address = addresses(environ)[service]
            pid = _running_pid(root, service)
            if pid is not None and health(address) == "SERVING":
                results[service] = ServiceStatus(service, address, pid, "SERVING")
            else:
                started.append(_spawn(service, environ))
        for process in started:
            process.wait_serving(max(1.0, deadline - time.monotonic()))
            results[process.service] = ServiceStatus(process.service, process.address, process.pid, "SERVING")
    return [results[service] for service in chosen]


def _waves(chosen: Iterable[str]) -> list[list[str]]:
    """``chosen`` split by :data:`WAVES` (each once, in wave order; empty waves dropped)."""
    order = {service: index for index, wave in enumerate(WAVES) for service in wave}
    waves: list[list[str]] = [[] for _ in WAVES]
    for service in dict.fromkeys(chosen):
        waves[order.get(service, len(WAVES) - 1)].append(service)
    return [wave for wave in waves if wave]


def start(service: str, environ: Mapping[str, str] = os.environ, timeout: float = 60.0) -> ServiceStatus:
    """Start one service detached and wait until it reports SERVING."""
    return start_all([service], environ, timeout)[0]


def stop_many(
    services: Iterable[str] = SERVICES, environ: Mapping[str, str] = os.environ, timeout: float = 30.0
) -> dict[str, bool]:
    """SIGTERM several services at once and wait for them to drain (SIGKILL after ``timeout``).

    Returns:
        For each service, whether it was running.
    """
    root = state_dir(environ)
    children: list[ServiceProcess] = []
    others: dict[str, int] = {}
    result: dict[str, bool] = {}
    for service in services:
        pid = _running_pid(root, service)
        result[service] = pid is not None
        if pid is None:
            pass
        elif pid in _CHILDREN:
            children.append(_CHILDREN[pid])
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            others[service] = pid
    stop_all(children, timeout)
    for process in children:
        _CHILDREN.pop(process.pid, None)
    deadline = time.monotonic() + timeout
    while others and time.monotonic() < deadline:
        others = {service: pid for service, pid in others.items() if _alive(pid)}
        if others:
            time.sleep(0.05)
    for pid in others.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for service in result:
        _pid_file(root, service).unlink(missing_ok=True)
    return result


def stop(service: str, environ: Mapping[str, str] = os.environ, timeout: float = 30.0) -> bool:
    """SIGTERM one service and wait for it to drain; False when it was not running."""
    return stop_many([service], environ, timeout)[service]
